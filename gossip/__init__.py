"""Membership by gossip: SWIM with the Lifeguard refinements, wire-compatible with memberlist/Serf."""
