// Upload a file to UploadRetry so that a cut connection loses nothing: declare it (CreateUpload,
// idempotent on upload_id), ask where to resume (received_bytes), send the rest as parts, and
// when the server says the offset moved on (FAILED_PRECONDITION: a checkpoint of the cut call
// landed after we asked) ask again and continue from there.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";

import {
  UploadContentRequestSchema,
  UploadRetry,
  UploadStatus,
  type Upload,
  type UploadContentRequest,
} from "./gen/retryd/v1/upload_retry_pb.js";
import { clientStreamsCarryOneMessage } from "./transport.js";

/** A file and its declaration. */
export interface UploadFile {
  /** The client's id for the upload (its idempotency key): 1 to 128 bytes. */
  uploadId: string;
  fileName: string;
  content: Uint8Array | Blob;
  /** Who the upload belongs to (a user or device id); ListUploads filters by it. */
  owner: string;
  /** Defaults to application/octet-stream on the server. */
  contentType?: string;
  /** Where the server delivers the file once stored (see upload_retry.proto); empty: kept only. */
  destination?: string;
}

export interface UploadOptions {
  /** Bytes per UploadContent part; default 1 MiB (the server takes up to 4 MiB by default). */
  partSize?: number;
  /** Times the upload may resume after FAILED_PRECONDITION before giving up; default 5. */
  maxResumes?: number;
  signal?: AbortSignal;
  /** Told about every part before it is sent. */
  onPart?: (offset: bigint, length: number) => void;
}

/** SHA-256 as lowercase hex, with WebCrypto (Node 20 and browsers). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export async function contentBytes(content: Uint8Array | Blob): Promise<Uint8Array> {
  return content instanceof Uint8Array ? content : new Uint8Array(await content.arrayBuffer());
}

/** States in which every byte is in and checked: nothing more to send. */
const contentComplete = (upload: Upload): boolean =>
  upload.status === UploadStatus.STORED ||
  upload.status === UploadStatus.DELIVERING ||
  upload.status === UploadStatus.DELIVERED ||
  (upload.status === UploadStatus.FAILED && upload.receivedBytes === upload.sizeBytes && upload.sizeBytes > 0n);

/**
 * Uploads `file` (or finishes an upload begun before, from where the server has it) and returns
 * the upload once its content is stored. Errors other than a moved offset are thrown as
 * ConnectErrors; calling again resumes.
 */
export async function uploadFile(transport: Transport, file: UploadFile, options: UploadOptions = {}): Promise<Upload> {
  const client = createClient(UploadRetry, transport);
  const partSize = options.partSize ?? 1 << 20;
  if (!Number.isInteger(partSize) || partSize < 1) throw new RangeError("partSize must be a whole number of at least 1");
  const maxResumes = options.maxResumes ?? 5;
  const callOptions = { signal: options.signal };
  const bytes = await contentBytes(file.content);
  let upload = await client.createUpload(
    {
      uploadId: file.uploadId,
      owner: file.owner,
      fileName: file.fileName,
      contentType: file.contentType ?? "",
      sizeBytes: BigInt(bytes.length),
      sha256: await sha256Hex(bytes),
      destination: file.destination ?? "",
    },
    callOptions,
  );
  const partsPerCall = clientStreamsCarryOneMessage(transport) ? 1 : Infinity;
  for (let resumes = 0; ; ) {
    if (contentComplete(upload)) return upload;
    try {
      // One call per batch of parts; each call starts where the server has the content.
      const parts = partsFrom(file.uploadId, bytes, upload.receivedBytes, partSize, options.onPart);
      upload = await client.uploadContent(take(parts, partsPerCall), callOptions);
    } catch (error) {
      const connectError = ConnectError.from(error);
      if (connectError.code !== Code.FailedPrecondition || resumes++ >= maxResumes) throw connectError;
      upload = await client.getUpload({ uploadId: file.uploadId }, callOptions);
    }
  }
}

/** The parts from `offset` to the end; an upload of 0 bytes is finished by one empty part. */
function* partsFrom(
  uploadId: string,
  bytes: Uint8Array,
  offset: bigint,
  partSize: number,
  onPart?: (offset: bigint, length: number) => void,
): Generator<UploadContentRequest> {
  let start = Number(offset);
  do {
    const data = bytes.subarray(start, start + partSize);
    onPart?.(BigInt(start), data.length);
    yield create(UploadContentRequestSchema, { uploadId, offset: BigInt(start), data });
    start += data.length;
  } while (start < bytes.length);
}

async function* take<T>(items: Iterable<T>, count: number): AsyncGenerator<T> {
  let taken = 0;
  for (const item of items) {
    if (taken++ >= count) return;
    yield item;
  }
}
