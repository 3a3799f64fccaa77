"""Jisu fund-analysis backend (fixture)."""
