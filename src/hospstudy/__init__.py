"""hospstudy: hospital-outcome studies from administrative data."""

__version__ = "0.1.0"
