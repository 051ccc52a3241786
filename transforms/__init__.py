"""PTransforms and pure logic: parsing, routing, flush policy, features."""
