"""Pure domain code for the tax authority's invoice format; imports neither Flask nor the database."""
