"""hashtrail: tamper-evident telemetry for ESP32 fleets (host side)."""

__version__ = "0.1.0"
