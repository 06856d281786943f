"""Pydantic models of the YAML graph spec."""
