"""A Qdrant gRPC server for the tests: Qdrant's own wire protocol (the `Collections` and
`Points` services generated from Qdrant's protos, as shipped in the `qdrant-client` package)
in front of Qdrant's own storage and search engine (`qdrant-edge-py`: segments, payload
filters, scoring), one edge shard per collection in a scratch folder.

No Qdrant server can be installed on these machines (it is on none of the reachable
registries); this lets `tests/tests/rag.rs` run databot's Qdrant backend over the real
protocol instead of skipping it. The translation between the two is this file's only logic:
every request field databot's backend sends is mapped, and anything else is refused with
UNIMPLEMENTED, so a new use of the API fails loudly here instead of being half-served.

Usage: edge_server.py PORT_FILE [DATA_DIR]
  Binds 127.0.0.1 on a free port, writes the port to PORT_FILE once serving, and runs until
  its standard input closes (the test process holding the pipe ended) or it is killed.
"""

import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures

import grpc
import qdrant_edge as edge
from qdrant_client import grpc as pb

DISTANCES = {
    pb.Distance.Cosine: edge.Distance.Cosine,
    pb.Distance.Euclid: edge.Distance.Euclid,
    pb.Distance.Dot: edge.Distance.Dot,
    pb.Distance.Manhattan: edge.Distance.Manhattan,
}


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def unimplemented(what):
    return Refused(grpc.StatusCode.UNIMPLEMENTED, f"edge_server: {what} is not mapped")


# ---- values ------------------------------------------------------------------------------


def from_value(value):
    kind = value.WhichOneof("kind")
    if kind in (None, "null_value"):
        return None
    if kind == "struct_value":
        return {k: from_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return getattr(value, kind)


def to_value(python):
    value = pb.Value()
    if python is None:
        value.null_value = pb.NullValue.NULL_VALUE
    elif isinstance(python, bool):
        value.bool_value = python
    elif isinstance(python, int):
        value.integer_value = python
    elif isinstance(python, float):
        value.double_value = python
    elif isinstance(python, str):
        value.string_value = python
    elif isinstance(python, dict):
        for k, v in python.items():
            value.struct_value.fields[k].CopyFrom(to_value(v))
    elif isinstance(python, (list, tuple)):
        value.list_value.values.extend(to_value(v) for v in python)
    else:
        raise Refused(grpc.StatusCode.INTERNAL, f"payload value {python!r} has no Qdrant form")
    return value


def payload_in(fields):
    return {k: from_value(v) for k, v in fields.items()}


def payload_out(target, payload):
    for k, v in (payload or {}).items():
        target[k].CopyFrom(to_value(v))


def id_in(point_id):
    which = point_id.WhichOneof("point_id_options")
    if which == "num":
        return point_id.num
    if which == "uuid":
        try:
            return uuid.UUID(point_id.uuid)
        except ValueError:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unable to parse UUID: {point_id.uuid}",
            ) from None
    raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "point id is empty")


def id_out(python_id):
    if isinstance(python_id, int):
        return pb.PointId(num=python_id)
    return pb.PointId(uuid=str(python_id))


def dense_of(message, what):
    """The dense vector of a `Vector` / `VectorInput` (new `dense` or deprecated `data`)."""
    if message.HasField("dense"):
        return list(message.dense.data)
    if hasattr(message, "data") and len(message.data) > 0 and not message.HasField("indices"):
        return list(message.data)
    raise unimplemented(f"a {what} that is not one dense vector")


# ---- filters -----------------------------------------------------------------------------


def filter_in(message):
    def conditions(items):
        return [condition_in(c) for c in items] or None

    if message.HasField("min_should"):
        raise unimplemented("min_should")
    return edge.Filter(
        must=conditions(message.must),
        should=conditions(message.should),
        must_not=conditions(message.must_not),
    )


def condition_in(condition):
    which = condition.WhichOneof("condition_one_of")
    if which == "field":
        field = condition.field
        if not field.HasField("match"):
            raise unimplemented("a field condition other than match")
        match = field.match
        kind = match.WhichOneof("match_value")
        if kind not in ("keyword", "integer", "boolean"):
            raise unimplemented(f"match.{kind}")
        return edge.FieldCondition(key=field.key, match=edge.MatchValue(getattr(match, kind)))
    if which == "has_id":
        return edge.HasIdCondition({id_in(p) for p in condition.has_id.has_id})
    if which == "filter":
        return filter_in(condition.filter)
    raise unimplemented(f"condition {which}")


def payload_wanted(selector):
    """`with_payload`: only true/false are mapped."""
    which = selector.WhichOneof("selector_options")
    if which is None:
        return False
    if which == "enable":
        return selector.enable
    raise unimplemented(f"with_payload.{which}")


# ---- the store ---------------------------------------------------------------------------


class Collection:
    def __init__(self, path, size, distance):
        self.size = size
        self.distance = distance
        self.shard = edge.EdgeShard.create(
            path, edge.EdgeConfig(vectors=edge.EdgeVectorParams(size=size, distance=DISTANCES[distance]))
        )
        self.lock = threading.Lock()
        self.operation = 0


class Store:
    def __init__(self, root):
        self.root = root
        self.collections = {}
        self.lock = threading.Lock()

    def get(self, name):
        with self.lock:
            collection = self.collections.get(name)
        if collection is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"Not found: Collection `{name}` doesn't exist!")
        return collection

    def create(self, name, size, distance):
        with self.lock:
            if name in self.collections:
                raise Refused(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"Wrong input: Collection `{name}` already exists!",
                )
            path = os.path.join(self.root, uuid.uuid4().hex)
            self.collections[name] = Collection(path, size, distance)

    def delete(self, name):
        with self.lock:
            collection = self.collections.pop(name, None)
        if collection is None:
            return False
        with collection.lock:
            collection.shard.close()
        return True


def handler(method):
    """Turn `Refused` and engine errors into gRPC status codes; time every answer."""

    def wrapped(self, request, context):
        started = time.monotonic()
        try:
            return method(self, request, started)
        except Refused as refused:
            context.abort(refused.code, refused.message)
        except Exception as error:  # the engine's own refusals (dimension, bad input)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: {error}")

    return wrapped


def elapsed(started):
    return time.monotonic() - started


class Collections(pb.CollectionsServicer):
    def __init__(self, store):
        self.store = store

    @handler
    def CollectionExists(self, request, started):
        with self.store.lock:
            exists = request.collection_name in self.store.collections
        return pb.CollectionExistsResponse(
            result=pb.CollectionExists(exists=exists), time=elapsed(started)
        )

    @handler
    def List(self, request, started):
        with self.store.lock:
            names = sorted(self.store.collections)
        return pb.ListCollectionsResponse(
            collections=[pb.CollectionDescription(name=n) for n in names], time=elapsed(started)
        )

    @handler
    def Get(self, request, started):
        collection = self.store.get(request.collection_name)
        with collection.lock:
            info = collection.shard.info()
        params = pb.CollectionParams(
            vectors_config=pb.VectorsConfig(
                params=pb.VectorParams(size=collection.size, distance=collection.distance)
            )
        )
        return pb.GetCollectionInfoResponse(
            result=pb.CollectionInfo(
                status=pb.CollectionStatus.Green,
                segments_count=info.segments_count,
                points_count=info.points_count,
                indexed_vectors_count=info.indexed_vectors_count,
                config=pb.CollectionConfig(params=params),
            ),
            time=elapsed(started),
        )

    @handler
    def Create(self, request, started):
        config = request.vectors_config
        if config.WhichOneof("config") != "params":
            raise unimplemented("named vectors")
        if config.params.distance not in DISTANCES:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "unknown distance")
        if config.params.size == 0:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "Wrong input: vector size must be positive")
        self.store.create(request.collection_name, config.params.size, config.params.distance)
        return pb.CollectionOperationResponse(result=True, time=elapsed(started))

    @handler
    def Delete(self, request, started):
        deleted = self.store.delete(request.collection_name)
        return pb.CollectionOperationResponse(result=deleted, time=elapsed(started))


class Points(pb.PointsServicer):
    def __init__(self, store):
        self.store = store

    def updated(self, collection, started):
        collection.operation += 1
        return pb.PointsOperationResponse(
            result=pb.UpdateResult(
                operation_id=collection.operation, status=pb.UpdateStatus.Completed
            ),
            time=elapsed(started),
        )

    @handler
    def Upsert(self, request, started):
        collection = self.store.get(request.collection_name)
        points = []
        for point in request.points:
            if point.vectors.WhichOneof("vectors_options") != "vector":
                raise unimplemented("named vectors")
            points.append(
                edge.Point(
                    id_in(point.id),
                    dense_of(point.vectors.vector, "point vector"),
                    payload_in(point.payload),
                )
            )
        with collection.lock:
            collection.shard.update(edge.UpdateOperation.upsert_points(points))
            return self.updated(collection, started)

    @handler
    def Delete(self, request, started):
        collection = self.store.get(request.collection_name)
        selector = request.points
        which = selector.WhichOneof("points_selector_one_of")
        if which == "points":
            operation = edge.UpdateOperation.delete_points([id_in(p) for p in selector.points.ids])
        elif which == "filter":
            operation = edge.UpdateOperation.delete_points_by_filter(filter_in(selector.filter))
        else:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "no points selected")
        with collection.lock:
            collection.shard.update(operation)
            return self.updated(collection, started)

    @handler
    def Count(self, request, started):
        collection = self.store.get(request.collection_name)
        query = edge.CountRequest(
            exact=True,
            filter=filter_in(request.filter) if request.HasField("filter") else None,
        )
        with collection.lock:
            count = collection.shard.count(query)
        return pb.CountResponse(result=pb.CountResult(count=count), time=elapsed(started))

    @handler
    def Scroll(self, request, started):
        collection = self.store.get(request.collection_name)
        if request.HasField("with_vectors") and request.with_vectors.WhichOneof("selector_options") == "enable" and request.with_vectors.enable:
            raise unimplemented("with_vectors")
        query = edge.ScrollRequest(
            offset=id_in(request.offset) if request.HasField("offset") else None,
            limit=request.limit if request.HasField("limit") else 10,
            filter=filter_in(request.filter) if request.HasField("filter") else None,
            with_payload=payload_wanted(request.with_payload) if request.HasField("with_payload") else True,
            with_vector=False,
        )
        with collection.lock:
            records, next_offset = collection.shard.scroll(query)
        response = pb.ScrollResponse(time=elapsed(started))
        for record in records:
            point = response.result.add(id=id_out(record.id))
            payload_out(point.payload, record.payload)
        if next_offset is not None:
            response.next_page_offset.CopyFrom(id_out(next_offset))
        return response

    @handler
    def Query(self, request, started):
        collection = self.store.get(request.collection_name)
        if not request.HasField("query") or request.query.WhichOneof("variant") != "nearest":
            raise unimplemented("a query other than nearest")
        if len(request.prefetch) > 0 or request.HasField("using"):
            raise unimplemented("prefetch or named vectors")
        vector = dense_of(request.query.nearest, "query vector")
        query = edge.QueryRequest(
            limit=request.limit if request.HasField("limit") else 10,
            offset=request.offset if request.HasField("offset") else None,
            query=edge.Query.Nearest(vector),
            filter=filter_in(request.filter) if request.HasField("filter") else None,
            score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
            with_payload=payload_wanted(request.with_payload) if request.HasField("with_payload") else False,
            with_vector=False,
        )
        with collection.lock:
            if len(vector) != collection.size:
                raise Refused(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Wrong input: Vector dimension error: expected dim: {collection.size}, got {len(vector)}",
                )
            scored = collection.shard.query(query)
        response = pb.QueryResponse(time=elapsed(started))
        for hit in scored:
            point = response.result.add(id=id_out(hit.id), score=hit.score, version=hit.version)
            payload_out(point.payload, hit.payload)
        return response


def main():
    port_file = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="databot-qdrant-")
    store = Store(root)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb.add_CollectionsServicer_to_server(Collections(store), server)
    pb.add_PointsServicer_to_server(Points(store), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as out:
        out.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    try:
        # Until the test that started us goes away (its end of our stdin closes).
        sys.stdin.read()
    finally:
        server.stop(grace=1)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
