#!/usr/bin/env python3
"""Generates branch_rules.json: one answer of
GET /repos/{owner}/{repo}/rules/branches/{branch} per branch-rule type in
GitHub's own REST description, with and without `parameters`.

    npm pack @octokit/openapi && tar xzf octokit-openapi-*.tgz
    python3 gen_branch_rules.py package/generated/api.github.com.json > branch_rules.json

The description (schema repository-rule-detailed) requires only `type`;
parameters are filled with the first enum value, 1, false or "x" by type.
"""
import json
import sys

spec = json.load(open(sys.argv[1]))
schemas = spec["components"]["schemas"]


def resolve(s):
    while "$ref" in s:
        s = schemas[s["$ref"].split("/")[-1]]
    return s


def instance(s):
    s = resolve(s)
    if "allOf" in s:
        out = {}
        for part in s["allOf"]:
            out.update(instance(part))
        return out
    for key in ("oneOf", "anyOf"):
        if key in s:
            return instance(s[key][0])
    if "enum" in s:
        return s["enum"][0]
    t = s.get("type")
    if isinstance(t, list):
        t = [x for x in t if x != "null"][0]
    if t == "object" or "properties" in s:
        return {k: instance(v) for k, v in s.get("properties", {}).items()}
    if t == "array":
        return [instance(s["items"])] if "items" in s else []
    if t == "integer" or t == "number":
        return 1
    if t == "boolean":
        return False
    return "x"


rules = []
for variant in resolve(schemas["repository-rule-detailed"])["oneOf"]:
    rule = resolve(variant["allOf"][0])
    props = rule["properties"]
    typ = props["type"]["enum"][0]
    with_params = {"type": typ}
    if "parameters" in props:
        with_params["parameters"] = instance(props["parameters"])
    info = {"ruleset_source_type": "Repository", "ruleset_source": "acme/widgets", "ruleset_id": len(rules) + 1}
    rules.append({
        "type": typ,
        "required": rule.get("required", []),
        "with_parameters": dict(with_params, **info),
        "without_parameters": dict({"type": typ}, **info),
    })

json.dump({"source": "@octokit/openapi " + spec["info"]["version"] + ", components.schemas.repository-rule-detailed",
           "rules": rules}, sys.stdout, indent=1, sort_keys=True)
print()
