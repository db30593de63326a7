"""BudgetService: the ledger conformance suite (every backend), pricing, windows, gRPC."""
