"""Data: the canonical DPC-layout data model, readers, validation and the synthetic database."""
