#!/usr/bin/env python3
"""A small S3-compatible object store over a folder, on 127.0.0.1.

It exists so that the development broker (tansu 0.4.9, see kafka.sh) can keep its data across a
restart: tansu stores everything through an object store, and its only durable choices are S3
and PostgreSQL, neither of which this machine has. `WEIR_KAFKA_STORAGE=s3 scripts/kafka.sh start`
runs this store and points tansu's `s3://` storage at it, so that a broker restart can be tested.

What tansu's object store client (object_store 0.12, path-style requests) uses, and nothing more:

  PUT    /BUCKET/KEY                 write; `If-None-Match: *` (create only) and `If-Match: ETAG`
                                     (replace only that version) answer 412 when they do not hold
  GET    /BUCKET/KEY, HEAD           read, with `ETag` and `Last-Modified`; `If-Match` (412) and
                                     `If-None-Match` (304); a `Range: bytes=A-B` read
  DELETE /BUCKET/KEY                 delete (204, also when missing)
  GET    /BUCKET?list-type=2&prefix=P[&delimiter=/][&start-after=K]
                                     list, as one page
  POST   /BUCKET?delete              delete many (an XML list of keys)

Objects are files under ROOT/BUCKET/KEY, written to a temporary file, fsynced and renamed, so a
store killed at any moment holds each object whole, old or new. An ETag is the MD5 of the bytes.
One lock serialises every request: conditional writes are atomic, and speed is not the point.
Requests are not authenticated (the address is 127.0.0.1 only).

Usage: s3store.py --root DIR --port PORT
"""

import argparse
import hashlib
import os
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ROOT = "."


def object_path(bucket, key):
    path = os.path.normpath(os.path.join(ROOT, bucket, key))
    if not path.startswith(os.path.normpath(os.path.join(ROOT, bucket)) + os.sep):
        raise ValueError(f"key {key!r} leaves the bucket")
    return path


def etag_of(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def read_object(path):
    """(bytes, etag, mtime) of the object at path, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data, etag_of(data), os.path.getmtime(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def write_object(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{threading.get_ident()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_object(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def keys_under(bucket, prefix):
    """Every key of bucket that starts with prefix, sorted (walks only the prefix's folder)."""
    base = os.path.join(ROOT, bucket)
    keys = []
    for folder, _, files in os.walk(os.path.join(base, prefix.rpartition("/")[0])):
        for name in files:
            if ".tmp-" in name:
                continue
            full = os.path.join(folder, name)
            key = os.path.relpath(full, base).replace(os.sep, "/")
            if key.startswith(prefix):
                keys.append(key)
    return sorted(keys)


def xml_text(tag, text):
    el = ET.Element(tag)
    el.text = text
    return el


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: tansu makes many requests
        pass

    def parse(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        return bucket, key, query

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, data=b"", headers=None, head=False):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and not head:
            self.wfile.write(data)

    def error(self, status, code):
        xml = f"<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>".encode()
        self.answer(status, xml, {"Content-Type": "application/xml"})

    def do_PUT(self):
        bucket, key, _ = self.parse()
        data = self.body()
        path = object_path(bucket, key)
        with LOCK:
            now = read_object(path)
            if self.headers.get("If-None-Match") == "*" and now is not None:
                return self.error(412, "PreconditionFailed")
            want = self.headers.get("If-Match")
            if want is not None and (now is None or now[1] != want):
                return self.error(412, "PreconditionFailed")
            source = self.headers.get("x-amz-copy-source")
            if source is not None:
                src_bucket, _, src_key = urllib.parse.unquote(source).lstrip("/").partition("/")
                copied = read_object(object_path(src_bucket, src_key))
                if copied is None:
                    return self.error(404, "NoSuchKey")
                data = copied[0]
            write_object(path, data)
        if source is not None:
            xml = f"<CopyObjectResult><ETag>{etag_of(data)}</ETag></CopyObjectResult>".encode()
            return self.answer(200, xml, {"Content-Type": "application/xml"})
        self.answer(200, headers={"ETag": etag_of(data)})

    def do_GET(self, head=False):
        bucket, key, query = self.parse()
        if not key:
            return self.list(bucket, query)
        with LOCK:
            found = read_object(object_path(bucket, key))
        if found is None:
            return self.error(404, "NoSuchKey")
        data, etag, mtime = found
        headers = {"ETag": etag, "Last-Modified": formatdate(mtime, usegmt=True)}
        if self.headers.get("If-Match") not in (None, etag):
            return self.error(412, "PreconditionFailed")
        if self.headers.get("If-None-Match") == etag:
            return self.answer(304, headers=headers)
        status, total = 200, len(data)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first) if first else max(total - int(last), 0)
            end = int(last) if first and last else total - 1
            data = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{total}"
            status = 206
        self.answer(status, data, headers, head)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_DELETE(self):
        bucket, key, _ = self.parse()
        with LOCK:
            remove_object(object_path(bucket, key))
        self.answer(204)

    def do_POST(self):
        bucket, _, query = self.parse()
        if "delete" not in query:
            return self.error(400, "InvalidRequest")
        request = ET.fromstring(self.body())
        result = ET.Element("DeleteResult")
        with LOCK:
            for key in request.iter():
                if key.tag.rsplit("}", 1)[-1] == "Key":
                    remove_object(object_path(bucket, key.text))
                    deleted = ET.SubElement(result, "Deleted")
                    deleted.append(xml_text("Key", key.text))
        self.answer(200, ET.tostring(result), {"Content-Type": "application/xml"})

    def list(self, bucket, query):
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        after = query.get("start-after", [""])[0]
        result = ET.Element("ListBucketResult")
        prefixes = []
        with LOCK:
            for key in keys_under(bucket, prefix):
                if key <= after:
                    continue
                rest = key[len(prefix):]
                if delimiter and delimiter in rest:
                    common = prefix + rest.split(delimiter, 1)[0] + delimiter
                    if common not in prefixes:
                        prefixes.append(common)
                    continue
                found = read_object(object_path(bucket, key))
                if found is None:
                    continue
                data, etag, mtime = found
                contents = ET.SubElement(result, "Contents")
                contents.append(xml_text("Key", key))
                contents.append(xml_text("Size", str(len(data))))
                stamp = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                contents.append(xml_text("LastModified", stamp))
                contents.append(xml_text("ETag", etag))
        for common in prefixes:
            el = ET.SubElement(result, "CommonPrefixes")
            el.append(xml_text("Prefix", common))
        result.append(xml_text("IsTruncated", "false"))
        self.answer(200, ET.tostring(result), {"Content-Type": "application/xml"})


def main():
    global ROOT
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--root", required=True, help="folder that holds the buckets")
    args.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    opts = args.parse_args()
    ROOT = os.path.abspath(opts.root)
    os.makedirs(ROOT, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
