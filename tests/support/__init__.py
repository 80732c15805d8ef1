"""Test support shared by several test areas (fixtures, sample artifacts, tiny scenes): not shipped."""
