"""The AgentService."""
