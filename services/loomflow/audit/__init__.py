"""The AuditService."""
