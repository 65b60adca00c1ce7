"""I/O side of helloscope: capture sources, flow tracking, reassembly, correlation, outputs, CLI."""

__version__ = "0.1.0"
