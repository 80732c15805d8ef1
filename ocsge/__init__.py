"""ocsge"""
