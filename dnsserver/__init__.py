"""An embedded DNS server answering for services and nodes from a catalog view."""
