"""Export routing.yaml to the gateways that serve traffic (vLLM Semantic Router, the Portkey
gateway, the LiteLLM proxy), and the confidence gate Portkey's output guardrail calls.

`targets.export_routing` reads routing.yaml (and tiers.yaml for each tier's confidence method) and
returns an `Export`: the target's own config text plus what it expresses exactly, what it
approximates and what it leaves out. A routing.yaml a target cannot express exactly is refused
(`ExportRefused`) unless `approximate` allows a documented approximation.
"""
