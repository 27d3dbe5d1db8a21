"""The verifier service: decides which executions' results are accepted."""
