"""POST /graphql with the fast path on answers byte for byte what Strawberry's own view answers.

Two live servers share one SQLite database: ``stock`` (``graphql_fastpath=False``: Strawberry's
view serves everything, and its runner makes the videos) and ``fast`` (``graphql_fastpath=True``,
no runner). Once every video is final the data stands still, and each case is POSTed with the
same bytes to ``stock`` once and to ``fast`` twice: the first sight of a document goes through
Strawberry, which remembers it, and the second is answered by the fast path (a compiled plan,
or graphql-core run directly when the plan cannot answer). Status, ``content-type`` and body
bytes of all three must be equal.

The cases are queries generated from ``schema.graphql`` by hypothesis-graphql (a fifth of them
breaking the schema once; their literal arguments sometimes hoisted into variables, sometimes
given the wrong JSON or none), sent with the owner's key, another user's or none, and a
hand-written list of the edges: bad variables, operation names, fragments, introspection,
syntax errors, other users' videos, missing keys, out-of-range pages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, nodes
from hypothesis_graphql import strategies as gql_st
from starlette.routing import Route

from tests.api.graphql.wire import VIDEO_FIELDS, generate
from tests.conftest import LiveServer, Serve, User
from tests.support import wait_for_status

SDL = (Path(__file__).resolve().parents[4] / "schema.graphql").read_text()
SCHEMA = graphql.build_schema(SDL)
GENERATED_EXAMPLES = 150
UNKNOWN = "00000000-0000-4000-8000-000000000000"
TIMEOUT = 30.0


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only (the conftest's runs every test on PostgreSQL too): both modes share this one."""
    yield f"sqlite+aiosqlite:///{tmp_path}/kensa.db"


# --- where the fast path counts what it answered --------------------------------------------------

def _graphql_view(server: LiveServer) -> Any:
    route = next(r for r in server.app.routes if isinstance(r, Route) and r.path == "/graphql")
    return getattr(route, "app", None) or route.endpoint


def fastpath_answered(server: LiveServer) -> int:
    """How many POSTs ``server`` answered with a compiled plan; 0 when its fast path is off
    (the view then has no remembered documents at all)."""
    documents = _graphql_view(server).documents
    return 0 if documents is None else int(documents.counts["compiled"])


# --- the two servers and their data ----------------------------------------------------------------

@dataclass
class World:
    stock: LiveServer
    fast: LiveServer
    keys: dict[str, str | None]
    videos: dict[str, str]


@pytest.fixture
async def world(serve: Serve, make_user: Any) -> AsyncIterator[World]:
    owner: User = await make_user(credits=100)
    other: User = await make_user(credits=100)
    stock = serve(run_worker=True, graphql_fastpath=False)
    fast = serve(run_worker=False, graphql_fastpath=True)
    async with httpx.AsyncClient(base_url=stock.url, timeout=TIMEOUT) as http:
        made = await asyncio.gather(
            generate(http, owner.key),
            generate(http, owner.key, prompt="a second one", duration=8),
            generate(http, owner.key, prompt="to be deleted"),
            generate(http, other.key, prompt="someone else's"),
        )
        done, second, deleted, foreign = made
        await asyncio.gather(
            *(wait_for_status(http, user, uuid, {"COMPLETED", "FAILED"})
              for user, uuid in ((owner, done), (owner, second), (owner, deleted), (other, foreign))))
        r = await http.post("/graphql", headers=owner.headers, json={
            "query": "mutation D($uuid: ID!) { deleteVideo(uuid: $uuid) { deleted } }",
            "variables": {"uuid": deleted}})
        assert r.json() == {"data": {"deleteVideo": {"deleted": True}}}, r.text
    # Every video is final and nothing else writes: both servers read the same rows from here on.
    yield World(stock, fast,
                keys={"owner": owner.key, "other": other.key, "none": None, "bad": "kg_" + "x" * 45},
                videos={"done": done, "second": second, "deleted": deleted, "foreign": foreign})


# --- posting one case to both modes ----------------------------------------------------------------

@dataclass
class Case:
    query: Any = None                       # the body's "query" (any JSON); ignored when raw is set
    variables: Any = None                   # the body's "variables"; omitted when None and not given
    key: str = "owner"                      # owner, other, none or bad
    operation: Any = None                   # the body's "operationName", when given
    send_variables: bool = True             # False: no "variables" member at all
    raw: bytes | None = None                # a body sent as is
    headers: dict[str, str] = field(default_factory=dict)  # more headers (content-type, accept)
    label: str = ""

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        data: dict[str, Any] = {"query": self.query}
        if self.send_variables:
            data["variables"] = self.variables
        if self.operation is not None:
            data["operationName"] = self.operation
        return json.dumps(data).encode()


def _comparable(r: httpx.Response) -> tuple[int, str | None, bytes]:
    return r.status_code, r.headers.get("content-type"), r.content


def exchange(stock: httpx.Client, fast: httpx.Client, keys: dict[str, str | None],
             case: Case) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """POST the case to stock once and to fast twice (remembered, then answered by the fast path)."""
    key = keys[case.key]
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    headers.update(case.headers)
    body = case.body()
    plain = stock.post("/graphql", content=body, headers=headers)
    first = fast.post("/graphql", content=body, headers=headers)
    second = fast.post("/graphql", content=body, headers=headers)
    return plain, first, second


def difference(case: Case, plain: httpx.Response, first: httpx.Response, second: httpx.Response) -> str | None:
    """None when all three answers agree, else a description of how they differ."""
    expected = _comparable(plain)
    lines = []
    for name, r in (("fast, first sight", first), ("fast, remembered", second)):
        got = _comparable(r)
        if got != expected:
            lines.append(f"  {name}: status {got[0]} content-type {got[1]!r}\n    body {got[2]!r}")
    if not lines:
        return None
    return (f"{case.label or 'case'}: key={case.key} body={case.body()!r} headers={case.headers}\n"
            f"  stock: status {expected[0]} content-type {expected[1]!r}\n    body {expected[2]!r}\n"
            + "\n".join(lines))


def clients(world: World) -> tuple[httpx.Client, httpx.Client]:
    return (httpx.Client(base_url=world.stock.url, timeout=TIMEOUT),
            httpx.Client(base_url=world.fast.url, timeout=TIMEOUT))


# --- generated cases -------------------------------------------------------------------------------

def _ids(videos: dict[str, str]) -> st.SearchStrategy[graphql.ValueNode]:
    known = [*videos.values(), UNKNOWN, UNKNOWN.upper(), "not a uuid", ""]
    return st.one_of(
        st.sampled_from(known).map(nodes.String),
        st.sampled_from(known[:2]).map(str.upper).map(nodes.String),
        st.text(max_size=12).map(nodes.String),
        st.integers(-3, 10**6).map(nodes.Int),  # ID takes int literals too
    )


# page and pageSize (1..100) are the only Int arguments: mostly in range, with their edges and beyond.
INTS = st.one_of(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 100),
    st.sampled_from([-1, 0, 1, 100, 101, 2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
).map(nodes.Int)

JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=6), st.lists(st.integers(-2, 2), max_size=2),
                 st.dictionaries(st.text(max_size=2), st.integers(0, 2), max_size=1), st.integers(2**31, 2**40))


def _type_node(type_: graphql.GraphQLInputType, *, relax: bool) -> graphql.TypeNode:
    if relax and isinstance(type_, graphql.GraphQLNonNull):
        type_ = type_.of_type
    return graphql.parse_type(str(type_))


def hoisted(document: graphql.DocumentNode, draw: Any) -> tuple[graphql.DocumentNode, dict[str, Any]]:
    """The document with (some of) its literal arguments turned into variables, and their values.

    An argument with a default may be declared nullable, and then sent null or left out; any
    value may be swapped for JSON of the wrong shape.
    """
    type_info = graphql.TypeInfo(SCHEMA)
    definitions: list[graphql.VariableDefinitionNode] = []
    values: dict[str, Any] = {}

    class Hoist(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> Any:
            argument = type_info.get_argument()
            if argument is None or isinstance(node.value, graphql.VariableNode) or not draw(st.booleans()):
                return None
            name = f"v{len(definitions)}"
            has_default = argument.default_value is not graphql.Undefined
            relax = has_default and draw(st.booleans())
            definitions.append(graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                type=_type_node(argument.type, relax=relax), directives=()))
            value = graphql.value_from_ast_untyped(node.value)
            choice = draw(st.sampled_from(["as is"] * 6 + ["junk", "null", "absent"]))
            if choice == "as is":
                values[name] = value
            elif choice == "junk":
                values[name] = draw(JUNK)
            elif choice == "null":
                values[name] = None
            return graphql.ArgumentNode(name=node.name, value=graphql.VariableNode(name=graphql.NameNode(value=name)))

    document = graphql.visit(document, graphql.TypeInfoVisitor(type_info, Hoist()))
    return operations_changed(document, variable_definitions=tuple(definitions)), values


def operations_changed(document: graphql.DocumentNode, **changes: Any) -> graphql.DocumentNode:
    """The document with each operation's fields changed (graphql-core's nodes are frozen)."""
    definitions = tuple(
        dataclasses.replace(d, **changes) if isinstance(d, graphql.OperationDefinitionNode) else d
        for d in document.definitions)
    return dataclasses.replace(document, definitions=definitions)


@st.composite
def generated_cases(draw: Any, videos: dict[str, str]) -> Case:
    # One in five breaks the schema once (an argument missing, null or of the wrong type): Strawberry
    # refuses it, or, once hoisted into a variable, the variable's coercion does.
    mode = draw(st.sampled_from([Mode.POSITIVE] * 4 + [Mode.NEGATIVE]))
    document = draw(gql_st.queries(SDL, custom_scalars={"ID": _ids(videos), "Int": INTS},
                                   print_ast=lambda d: d, mode=mode))
    assert isinstance(document, graphql.DocumentNode)
    variables: dict[str, Any] | None = None
    if draw(st.booleans()):
        document, variables = hoisted(document, draw)
    operation_name = None
    named = draw(st.sampled_from(["anonymous", "named", "named and asked for"]))
    if named != "anonymous":
        document = operations_changed(document, name=graphql.NameNode(value="Generated"))
        if named == "named and asked for":
            operation_name = "Generated"
    query = graphql.print_ast(document)
    if not variables and draw(st.booleans()):
        return Case(query, key=draw(st.sampled_from(["owner", "owner", "owner", "other", "none"])),
                    operation=operation_name, send_variables=draw(st.booleans()), label="generated")
    return Case(query, variables, key=draw(st.sampled_from(["owner", "owner", "owner", "other", "none"])),
                operation=operation_name, label="generated")


def run_generated(world: World) -> Counter[str]:
    """The hypothesis run (in a thread of its own: the test's event loop stays free)."""
    stock, fast = clients(world)
    statuses: Counter[str] = Counter()

    @settings(max_examples=GENERATED_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink), print_blob=False,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(case=generated_cases(world.videos))
    def check(case: Case) -> None:
        plain, first, second = exchange(stock, fast, world.keys, case)
        note(f"query: {case.query}\nvariables: {case.variables}\noperationName: {case.operation}")
        problem = difference(case, plain, first, second)
        assert problem is None, problem
        statuses["errors" if b'"errors"' in plain.content else "data"] += 1

    with stock, fast:
        check()
    return statuses


async def test_generated_queries_answer_the_same_bytes_in_both_modes(world: World) -> None:
    before = fastpath_answered(world.fast)
    statuses = await asyncio.to_thread(run_generated, world)
    # Some of them must have reached data, and the fast path must have answered some.
    assert statuses["data"] > 0, statuses
    assert fastpath_answered(world.fast) > before


# --- hand-written cases ----------------------------------------------------------------------------

READ = "query Video($uuid: ID!) { video(uuid: $uuid) { uuid status progress videoUrl creditsUsed } }"
FULL = f"query Video($uuid: ID!) {{ video(uuid: $uuid) {{ {VIDEO_FIELDS} }} }}"
TASK = "query Task($uuid: ID!) { videoTask(uuid: $uuid) { uuid status progress } }"
LIST = f"""query Videos($page: Int!, $size: Int!) {{
  videos(page: $page, pageSize: $size) {{ total page pageSize videos {{ {VIDEO_FIELDS} }} }}
}}"""
NULLABLE = "query Videos($size: Int) { videos(pageSize: $size) { pageSize total videos { uuid } } }"
DEFAULTED = "query Videos($size: Int = 1) { videos(pageSize: $size) { pageSize videos { uuid } } }"
HISTORY = """query History($page: Int!, $size: Int!) {
  creditHistory(page: $page, pageSize: $size) {
    total page pageSize transactions { id transNo transType credits balanceAfter videoUuid createdAt }
  }
}"""
ACCOUNT = "{ me { id email credits { available frozen used total } } }"
MODELS = "{ models { __typename id name provider modes maxDuration durations resolutions aspectRatios enabled } }"
TWO = "query A { me { email } } query B { models { id } }"
ALIASES = """query Two($a: ID!, $b: ID!) {
  first: video(uuid: $a) { id key: uuid state: status }
  second: video(uuid: $b) { uuid uuid status }
  again: video(uuid: $a) { progress }
  page: videos(pageSize: 1) { count: total }
}"""
FRAGMENTS = """
fragment Basics on Video { uuid status ...More }
fragment More on Video { progress createdAt }
query Fragments($uuid: ID!) { video(uuid: $uuid) { ...Basics videoUrl ... on Video { model } ... { duration } } }
"""
TYPENAMES = ("query Names($uuid: ID!) { __typename video(uuid: $uuid) { __typename uuid } "
             "videos(pageSize: 2) { __typename videos { __typename id } } me { __typename credits { __typename } } }")
DIRECTIVES = """query Switches($uuid: ID!, $on: Boolean!) {
  video(uuid: $uuid) { uuid videoUrl @include(if: $on) status @skip(if: $on) ...Sizes @include(if: $on) }
}
fragment Sizes on Video { fileSize duration }"""
INTROSPECTION = '{ __schema { queryType { name } } video: __type(name: "Video") { name fields { name } } }'
TOO_MANY_ALIASES = "{ " + " ".join(f"a{i}: models {{ id }}" for i in range(40)) + " }"


def edge_cases(videos: dict[str, str]) -> list[Case]:
    done, second, deleted, foreign = videos["done"], videos["second"], videos["deleted"], videos["foreign"]
    cases = [
        # The ordinary reads, so later cases meet remembered documents.
        Case(READ, {"uuid": done}, label="read"),
        Case(FULL, {"uuid": second}, label="full video"),
        Case(TASK, {"uuid": done}, label="task"),
        Case(LIST, {"page": 1, "size": 20}, label="list"),
        Case(LIST, {"page": 2, "size": 1}, label="list, page 2"),
        Case(LIST, {"page": 50, "size": 100}, label="list, past the end"),
        Case(HISTORY, {"page": 1, "size": 5}, label="credit history"),
        Case(ACCOUNT, label="me"),
        Case(MODELS, label="models"),
        Case(MODELS, key="none", label="models without a key"),
        # Variables of the wrong type.
        Case(READ, {"uuid": {"a": 1}}, label="ID from an object"),
        Case(READ, {"uuid": True}, label="ID from a boolean"),
        Case(READ, {"uuid": 1.5}, label="ID from a float"),
        Case(READ, {"uuid": [done]}, label="ID from a list"),
        Case(READ, {"uuid": 12}, label="ID from an int"),
        Case(LIST, {"page": "1", "size": 20}, label="Int from a string"),
        Case(LIST, {"page": 1, "size": 1.5}, label="Int from a float"),
        Case(LIST, {"page": 1, "size": 2.0}, label="Int from a whole float"),
        Case(LIST, {"page": 1, "size": 2**31}, label="Int past 32 bits"),
        Case(LIST, {"page": True, "size": 2}, label="Int from a boolean"),
        Case(READ, [done], label="variables as a list"),
        Case(READ, "uuid", label="variables as a string"),
        # Null into non-null, and missing variables.
        Case(READ, {"uuid": None}, label="null into ID!"),
        Case(LIST, {"page": None, "size": 2}, label="null into Int!"),
        Case(NULLABLE, {"size": None}, label="null through Int into pageSize: Int!"),
        Case(NULLABLE, {}, label="Int variable left out (the argument's default)"),
        Case(NULLABLE, {"size": 3}, label="Int variable given"),
        Case(DEFAULTED, {}, label="variable default"),
        Case(DEFAULTED, {"size": None}, label="null over a variable default"),
        Case(READ, {}, label="missing variable"),
        Case(READ, None, label="variables null"),
        Case(READ, send_variables=False, label="no variables member"),
        Case(READ, {"uuid": done, "unused": [1, 2]}, label="an extra variable"),
        # Operation names.
        Case(READ, {"uuid": done}, operation="Video", label="the operation named"),
        Case(READ, {"uuid": done}, operation="Other", label="an unknown operationName"),
        Case(READ, {"uuid": done}, operation="", label="an empty operationName"),
        Case(READ, {"uuid": done}, operation=7, label="a numeric operationName"),
        Case(TWO, operation="A", label="two operations, A"),
        Case(TWO, operation="B", label="two operations, B"),
        Case(TWO, label="two operations, none named"),
        Case(TWO, operation="C", label="two operations, unknown name"),
        # Shapes of selection.
        Case(ALIASES, {"a": done, "b": second}, label="aliases"),
        Case(FRAGMENTS, {"uuid": done}, label="fragments"),
        Case(FRAGMENTS, {"uuid": UNKNOWN}, label="fragments on null"),
        Case(TYPENAMES, {"uuid": done}, label="__typename"),
        Case("{ __typename }", label="__typename alone"),
        *[Case(DIRECTIVES, {"uuid": done, "on": on}, label=f"@include/@skip {on}") for on in (True, False)],
        Case("{ videos(pageSize: 3) { videos { uuid } videos { status } total } videos(pageSize: 3) { page } }",
             label="merged fields"),
        Case(TOO_MANY_ALIASES, label="over the alias limit"),
        Case("fragment Unused on Video { uuid } { models { id } }", label="an unused fragment"),
        # Introspection.
        Case(INTROSPECTION, label="introspection"),
        Case(INTROSPECTION, key="none", label="introspection without a key"),
        Case(graphql.get_introspection_query(descriptions=True), label="the full introspection query"),
        # Syntax errors and bodies that are not a query.
        Case("{ video(", label="syntax error"),
        Case("query {", label="unterminated selection"),
        Case("", label="empty query"),
        Case("}{", label="braces the wrong way"),
        Case('{ video(uuid: "\\u00") { uuid } }', label="bad escape"),
        Case("{ nope }", label="unknown field"),
        Case("{ video { uuid } }", label="missing argument"),
        Case(7, label="query is a number"),
        Case(None, label="query is null"),
        Case(raw=b"{}", label="no query member"),
        Case(raw=b"not json", label="not JSON"),
        Case(raw=b"[]", label="an empty batch"),
        Case(raw=json.dumps([{"query": "{ models { id } }"}]).encode(), label="a batch"),
        Case(raw=json.dumps({"query": "{ models { id } }", "extensions": {"x": 1}}).encode(), label="extensions"),
        # Not found, and other users' videos.
        Case(READ, {"uuid": UNKNOWN}, label="a nonexistent uuid"),
        Case(READ, {"uuid": "not a uuid"}, label="not a uuid"),
        Case(READ, {"uuid": foreign}, label="another user's video"),
        Case(READ, {"uuid": done}, key="other", label="a video read by another user"),
        Case(READ, {"uuid": deleted}, label="a deleted video"),
        Case(TASK, {"uuid": foreign}, label="another user's video's task"),
        Case(TASK, {"uuid": UNKNOWN}, label="a nonexistent task"),
        # No key, or a bad one.
        Case(READ, {"uuid": done}, key="none", label="video without a key"),
        Case(READ, {"uuid": done}, key="bad", label="video with a bad key"),
        Case(ACCOUNT, key="none", label="me without a key"),
        Case(LIST, {"page": 1, "size": 5}, key="none", label="videos without a key"),
        Case(HISTORY, {"page": 1, "size": 5}, key="bad", label="history with a bad key"),
        # Pages out of range.
        *[Case(LIST, {"page": page, "size": size}, label=f"page {page}, pageSize {size}")
          for page, size in ((1, 0), (1, 101), (1, -1), (1, 500), (0, 5), (-1, 5), (1, 100), (10**6, 1))],
        Case("{ videos(pageSize: 0) { total } }", label="pageSize 0 as a literal"),
        Case("{ creditHistory(pageSize: 101) { total } }", label="history pageSize 101 as a literal"),
        Case(HISTORY, {"page": 0, "size": 5}, label="history page 0"),
        # Transport: content types and Accept headers.
        Case(READ, {"uuid": done}, headers={"content-type": "application/json; charset=utf-8"},
             label="json with a charset"),
        Case(READ, {"uuid": done}, headers={"accept": "application/graphql-response+json"},
             label="accept graphql-response+json"),
        Case(READ, {"uuid": done}, headers={"accept": "application/json"}, label="accept json"),
        Case(READ, {"uuid": done}, headers={"accept": "*/*"}, label="accept anything"),
        Case(READ, {"uuid": done}, headers={"accept": "text/html"}, label="accept html"),
        Case(READ, {"uuid": done}, headers={"content-type": "text/plain"}, label="text/plain body"),
        Case(READ, {"uuid": done}, headers={"content-type": "application/graphql"}, label="application/graphql"),
        Case("subscription Follow($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status } }", {"uuid": done},
             label="a subscription over POST"),
    ]
    return cases


def run_edges(world: World) -> list[str]:
    stock, fast = clients(world)
    problems = []
    with stock, fast:
        for case in edge_cases(world.videos):
            problem = difference(case, *exchange(stock, fast, world.keys, case))
            if problem is not None:
                problems.append(problem)
    return problems


async def test_hand_written_edges_answer_the_same_bytes_in_both_modes(world: World) -> None:
    before = fastpath_answered(world.fast)
    problems = await asyncio.to_thread(run_edges, world)
    assert not problems, f"{len(problems)} of {len(edge_cases(world.videos))} cases differ:\n" + "\n".join(problems)
    assert fastpath_answered(world.fast) > before


# --- the fast path is really what answered -----------------------------------------------------------

async def test_only_the_fast_server_answers_remembered_posts_by_the_fast_path(world: World) -> None:
    case = Case(READ, {"uuid": world.videos["done"]})
    stock_before = fastpath_answered(world.stock)
    fast_before = fastpath_answered(world.fast)
    stock, fast = clients(world)
    with stock, fast:
        keys = world.keys
        headers = {"content-type": "application/json", "authorization": f"Bearer {keys['owner']}"}
        first = fast.post("/graphql", content=case.body(), headers=headers)
        after_first = fastpath_answered(world.fast)
        second = fast.post("/graphql", content=case.body(), headers=headers)
        after_second = fastpath_answered(world.fast)
        for _ in range(3):
            stock.post("/graphql", content=case.body(), headers=headers)
    assert first.json()["data"]["video"]["uuid"] == world.videos["done"]
    assert _comparable(first) == _comparable(second)
    # The first sight is Strawberry's; the second is the compiled plan's.
    assert (after_first - fast_before, after_second - fast_before) == (0, 1)
    # graphql_fastpath=False: Strawberry's view answers every POST.
    assert fastpath_answered(world.stock) == stock_before == 0
