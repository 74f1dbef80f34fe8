"""Tests of the data plane (storage/)."""
