"""`{name}`: a databot tool plugin in Python.

Build it with `databot plugin build .` (componentize-py, then the manifest in
manifest.json is embedded). The contract is in wit/ (`databot plugin wit`); the generated
bindings live in the `wit_world` package at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import logging, types


class WitWorld(wit_world.WitWorld):
    pass


GREET_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Who to greet."}},
    "required": ["name"],
    "additionalProperties": False,
}


class ToolHandler(exports.ToolHandler):
    def list_tools(self):
        return [
            types.OperationSpec(
                name="{name}_greet",
                description="Greet someone by name.",
                input_schema=json.dumps(GREET_SCHEMA),
            )
        ]

    def call(self, name, arguments):
        # The host has validated `arguments` against the tool's schema already.
        args = json.loads(arguments)
        if name == "{name}_greet":
            logging.log(logging.Level.INFO, "greeting " + args["name"])
            return json.dumps({"greeting": "hello, " + args["name"]})
        raise Err(types.Error_NotFound("no tool " + name))
