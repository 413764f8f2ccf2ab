"""The curator workspace: the weekly lists on a web page, and what curators record coming back."""
