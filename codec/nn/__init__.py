"""Layers shared by the image and feature models."""
