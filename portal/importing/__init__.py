"""Import of signed invoice XML files in the tax authority's format."""
