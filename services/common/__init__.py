"""The library every service shares: model helpers, errors, and (later) server and telemetry setup."""
