"""An example defense packaged for ER-Grid (README "Your own defense")."""
