"""The BudgetService."""
