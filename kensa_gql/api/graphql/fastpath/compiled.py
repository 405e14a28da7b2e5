"""Query operations compiled to straight Python, for documents Strawberry has already accepted.

graphql-core interprets a document afresh on every request: it coerces the variables, collects
the fields, builds a resolve info and a path per field and completes every value by its type.
For a document clients send over and over, all of that but the values is the same each time.
``OperationPlan`` works it out once per query operation (and per combination of the variables
its @skip/@include directives read) and generates a small Python function that does only the
rest: call the root resolvers as Strawberry would (field_calls.py), read attributes, check and
coerce leaves as graphql-core does, and build the result dictionaries.

The plan only ever gives graphql-core's answer or none: anything it does not handle is refused
when compiling (``NotCompiled``: mutations, subscriptions, introspection, abstract types, a
resolver inside a list ...), and anything unusual at run time (an exception, a null in a
non-null position, a value the fast checks do not recognise and the scalar refuses) raises, and
the caller executes the whole operation again the usual way. Re-running is only safe because
queries have no side effects: mutations are never compiled.
"""

from __future__ import annotations

import keyword
from typing import Any

from graphql import (
    DirectiveNode,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    VariableNode,
    get_variable_values,
    is_leaf_type,
    visit,
)
from graphql.execution.collect_fields import FragmentDetails, GroupedFieldSet, collect_fields, collect_subfields
from graphql.execution.get_variable_signature import GraphQLVariableSignature, get_variable_signature
from graphql.execution.values import VariableValues, VariableValueSource
from graphql.language import Visitor
from graphql.pyutils import Path
from strawberry import Schema
from strawberry.execution import optimized_is_awaitable

from kensa_gql.api.graphql.fastpath.field_calls import FieldCall, callable_field
from kensa_gql.api.graphql.fastpath.strawberry_internals import (
    core_schema,
    has_exception_handlers,
    is_default_resolver,
    strawberry_field,
)

VARIANTS = 16  # @skip/@include combinations compiled per operation; more run the usual way
_INT_RANGE = "-2147483648 <= {0} <= 2147483647"
INT32 = range(-2_147_483_648, 2_147_483_648)
# Values of exactly these Python types come out of these scalars' coercion unchanged.
AS_IS: dict[Any, type] = {GraphQLString: str, GraphQLID: str, GraphQLInt: int, GraphQLBoolean: bool}


class NotCompiled(Exception):
    """The operation has something a plan does not handle; it always runs the usual way."""


class Fallback(Exception):
    """This request's values need graphql-core's care: run the whole operation the usual way."""


def _as_is(value: Any, python: type) -> bool:
    """True if graphql-core's input coercion would give ``value`` itself (Int: within 32 bits)."""
    return type(value) is python and (python is not int or value in INT32)


def _refuse(value: Any) -> Any:
    raise Fallback("an error value" if isinstance(value, Exception) else "a null in a non-null position")


def _not_a_list(value: Any) -> Any:
    raise Fallback("a null in a non-null position" if value is None else f"a list given as {type(value).__name__}")


def _not_awaited(value: Any) -> Any:
    close = getattr(value, "close", None)
    if close is not None:
        close()  # never awaited: closed, so it does not warn
    raise Fallback("a synchronous resolver returned an awaitable")


def _leaf(kind: Any, non_null: bool) -> Any:
    """graphql-core's completion of a leaf value, refusing what would be an error."""
    def complete(value: Any) -> Any:
        if value is None:
            if non_null:
                raise Fallback("a null in a non-null position")
            return None
        if isinstance(value, Exception):
            raise Fallback("an error value")
        try:
            coerced = kind.coerce_output_value(value)
        except Exception as exc:
            raise Fallback(f"{kind} refused a value") from exc
        if coerced is None or coerced is Undefined:
            raise Fallback(f"{kind} refused a value")
        return coerced
    return complete


class _Source:
    """The generated module: functions as text, and the objects they refer to by name."""

    def __init__(self) -> None:
        self.functions: list[str] = []
        self.names: dict[str, Any] = {"Fallback": Fallback, "_refuse": _refuse, "_not_a_list": _not_a_list,
                                      "_not_awaited": _not_awaited, "_aw": optimized_is_awaitable}

    def name(self, value: Any, prefix: str = "k") -> str:
        name = f"{prefix}{len(self.names)}"
        self.names[name] = value
        return name

    def function(self, header: str, body: list[str]) -> str:
        name = f"f{len(self.functions)}"
        self.functions.append(header.format(name) + "\n" + "\n".join("    " + line for line in body))
        return name

    def build(self, entry: str) -> Any:
        code = compile("\n\n".join(self.functions), "<compiled query>", "exec")
        exec(code, self.names)  # noqa: S102 - our own text: names are GraphQL names and literals
        return self.names[entry]


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


class _Compiler:
    def __init__(self, schema: Schema, document: DocumentNode, operation: OperationDefinitionNode,
                 variables: VariableValues) -> None:
        self.schema = schema
        self.core = core_schema(schema)
        self.operation = operation
        self.variables = variables
        self.definitions = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.fragments = {name: FragmentDetails(d) for name, d in self.definitions.items()}
        self.source = _Source()

    def program(self) -> Any:
        root_type = self.core.query_type
        assert root_type is not None
        collected = collect_fields(self.core, self.fragments, self.variables, root_type, self.operation)
        if collected.new_defer_usages:
            raise NotCompiled("@defer")
        body, _, _ = self._fields(root_type, collected.grouped_field_set, None, root=True)
        return self.source.build(self.source.function("async def {}(root, ctx, vv):", body))

    def _fields(self, parent: GraphQLObjectType, fields: GroupedFieldSet, path: Path | None,
                root: bool = False) -> tuple[list[str], bool, bool]:
        """Statements building the selection's dict from ``s`` (the root: ``root``); needs request, async."""
        lines: list[str] = []
        entries: list[str] = []
        takes_request = is_async = root
        source = "root" if root else "s"
        for index, (key, details) in enumerate(fields.items()):
            if any(d.defer_usage is not None or d.fragment_variable_values is not None for d in details):
                raise NotCompiled("@defer or fragment variables")
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                entries.append(f"{key!r}: {parent.name!r}")
                continue
            field_def = self.core.get_field(parent, name)
            if field_def is None:
                continue  # graphql-core leaves it out too
            if name.startswith("__"):
                raise NotCompiled("introspection")
            var = f"v{index}"
            field_path = None if path is None and not root else Path(path, key, parent.name)
            definition = strawberry_field(field_def)
            call = callable_field(self.schema, field_def)
            if call is not None:
                if field_path is None:
                    raise NotCompiled("a resolver inside a list")
                caller = self.source.name(FieldCall(self.schema, call, field_def, parent, [d.node for d in details],
                                                    field_path, self.definitions, self.operation))
                lines.append(f"{var} = {caller}({source}, ctx, root, vv)")
                lines.append(f"{var} = await {var}" if call.is_async else f"if _aw({var}): _not_awaited({var})")
                takes_request = True
                is_async = is_async or call.is_async
            elif (definition is not None and definition.base_resolver is None and not definition.extensions
                  and definition.default_resolver is getattr and is_default_resolver(field_def.resolve)
                  and not field_def.args
                  and not has_exception_handlers(self.schema, definition)):
                attribute = definition.python_name
                if attribute.isidentifier() and not keyword.iskeyword(attribute):
                    lines.append(f"{var} = {source}.{attribute}")
                else:
                    lines.append(f"{var} = getattr({source}, {attribute!r})")
            else:
                raise NotCompiled(f"the field {parent.name}.{name}")
            completion, needs_request, awaits = self._complete(field_def.type, var, details, field_path)
            lines.extend(completion)
            takes_request, is_async = takes_request or needs_request, is_async or awaits
            entries.append(f"{key!r}: {var}")
        lines.append("return {" + ", ".join(entries) + "}")
        return lines, takes_request, is_async

    def _complete(self, kind: Any, var: str, details: Any, path: Path | None) -> tuple[list[str], bool, bool]:
        """Statements turning ``var`` into its completed value of ``kind``; needs request, async."""
        non_null = isinstance(kind, GraphQLNonNull)
        inner = kind.of_type if non_null else kind
        if is_leaf_type(inner):
            return self._leaf(inner, var, non_null), False, False
        if isinstance(inner, GraphQLList):
            item, _, _ = self._complete(inner.of_type, "x", details, None)
            convert = self.source.function("def {}(x):", [*item, "return x"])
            lines = [f"if type({var}) is not list and type({var}) is not tuple: _not_a_list({var})",
                     f"{var} = [{convert}(x) for x in {var}]"]
            return (lines if non_null else [f"if {var} is not None:", *_indent(lines)]), False, False
        if not isinstance(inner, GraphQLObjectType):
            raise NotCompiled(f"the abstract type {inner}")
        if inner.is_type_of is not None:
            raise NotCompiled(f"{inner}.is_type_of")
        collected = collect_subfields(self.core, self.fragments, self.variables, self.operation, inner, details)
        if collected.new_defer_usages:
            raise NotCompiled("@defer")
        body, takes_request, is_async = self._fields(inner, collected.grouped_field_set, path)
        arguments = "s, ctx, root, vv" if takes_request else "s"
        function = self.source.function(f"{'async ' if is_async else ''}def {{}}({arguments}):", body)
        call = f"{'await ' if is_async else ''}{function}({var}{', ctx, root, vv' if takes_request else ''})"
        lines = [f"if isinstance({var}, Exception): _refuse({var})", f"{var} = {call}"]
        if non_null:
            return [f"if {var} is None: _refuse({var})", *lines], takes_request, is_async
        return [f"if {var} is not None:", *_indent(lines)], takes_request, is_async

    def _leaf(self, kind: Any, var: str, non_null: bool) -> list[str]:
        complete = self.source.name(_leaf(kind, non_null))
        members = getattr(kind, "wrapped_cls", None)
        if isinstance(kind, GraphQLEnumType) and members is not None:
            # Strawberry's enum type serialises a member by scanning its values: memoised here, by
            # identity (members are the enum's only instances, and an Enum's hash is Python code).
            memo = self.source.name({id(member): kind.coerce_output_value(member) for member in members})
            line = f"{var} = {memo}[id({var})] if type({var}) is {self.source.name(members)} else {complete}({var})"
            return [line] if non_null else [f"if {var} is not None:", "    " + line]
        python = AS_IS.get(kind)
        if python is None:
            return [f"{var} = {complete}({var})"] if non_null else [f"if {var} is not None: {var} = {complete}({var})"]
        unusual = f"type({var}) is not {python.__name__}"
        if python is int:
            unusual = f"{unusual} or not {_INT_RANGE.format(var)}"
        if not non_null:
            unusual = f"{var} is not None and ({unusual})"
        return [f"if {unusual}: {var} = {complete}({var})"]


class _Switches(Visitor):
    """The variables @skip and @include read: the collected fields depend on their values."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        if node.name.value in ("skip", "include"):
            for argument in node.arguments or ():
                if isinstance(argument.value, VariableNode):
                    self.names.add(argument.value.name.value)


class OperationPlan:
    """One query operation of one document: its variables' coercion and its compiled variants."""

    def __init__(self, schema: Schema, document: DocumentNode, operation: OperationDefinitionNode) -> None:
        if operation.operation != OperationType.QUERY:
            raise NotCompiled(f"a {operation.operation.value}")
        if any(isinstance(d, FragmentDefinitionNode) and d.variable_definitions for d in document.definitions):
            raise NotCompiled("fragment variables")
        self._schema = schema
        self._document = document
        self._operation = operation
        definitions = operation.variable_definitions or ()
        self._signatures: list[tuple[str, GraphQLVariableSignature, type | None, bool]] = []
        for definition in definitions:
            signature = get_variable_signature(core_schema(schema), definition)
            if not isinstance(signature, GraphQLVariableSignature):
                raise NotCompiled("an unknown variable type")
            kind: Any = signature.type
            non_null = isinstance(kind, GraphQLNonNull)
            python = AS_IS.get(kind.of_type if non_null else kind)
            # Fast only without a default: with one, graphql-core may use it; leave that to it.
            self._signatures.append((signature.name, signature, None if definition.default_value else python,
                                     non_null))
        self._definitions = definitions
        switches = _Switches()
        visit(document, switches)
        self._switches = tuple(sorted(switches.names))
        self._programs: dict[tuple[Any, ...], Any] = {}

    def variables(self, inputs: dict[str, Any]) -> VariableValues:
        """graphql-core's coercion of ``inputs``; raises Fallback where it would give errors."""
        sources: dict[str, VariableValueSource] = {}
        coerced: dict[str, Any] = {}
        for name, signature, python, non_null in self._signatures:
            value: Any = inputs.get(name, Undefined)
            if python is None or (value is Undefined and non_null):
                break
            if value is Undefined:
                sources[name] = VariableValueSource(signature)
                continue
            sources[name] = VariableValueSource(signature, value)
            if (value is None and not non_null) or _as_is(value, python):
                coerced[name] = value
                continue
            break
        else:
            return VariableValues(sources, coerced)
        full = get_variable_values(core_schema(self._schema), self._definitions, inputs, max_errors=50)
        if isinstance(full, list):
            raise Fallback("variables with errors")
        return full

    def program(self, variables: VariableValues) -> Any:
        """The compiled function for these variables' @skip/@include values; raises NotCompiled."""
        key = tuple(variables.coerced.get(name, Undefined) for name in self._switches)
        program = self._programs.get(key)
        if program is None:
            if len(self._programs) >= VARIANTS:
                raise Fallback("too many @skip/@include combinations")
            try:
                program = _Compiler(self._schema, self._document, self._operation, variables).program()
            except NotCompiled as exc:
                program = exc
            except Exception as exc:  # e.g. a literal argument graphql-core refuses: its path reports it
                program = NotCompiled(f"{type(exc).__name__} while compiling")
            self._programs[key] = program
        if isinstance(program, NotCompiled):
            raise program
        return program
