"""Helpers shared by the test packages (`from helpers.tiny import tiny_model`).

Importable as `helpers` because pytest puts tests/ on sys.path for tests/conftest.py (tests/ itself is not a
package), before it collects any test module.
"""
