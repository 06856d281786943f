"""Tools the tests and ``gradcheck`` share: central finite differences in float64."""
