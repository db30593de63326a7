"""The PolicyService."""
