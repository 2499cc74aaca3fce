"""Offline-conversion sync connector."""
