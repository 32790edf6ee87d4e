"""podkit's API: each object's types as parsed, and every name the API carries.

Other packages of the operator read and write the API only through these names: a key, a
condition type or an event reason is defined once here, never retyped as a literal.
"""
