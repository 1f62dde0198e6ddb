import { randomUUID } from 'node:crypto';
import http, { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { FhirError } from '../errors';
import { ALLOW } from './edge';
import { outcomeOf } from './outcome';

/**
 * Errors Node's HTTP server produces before Express (and so the FHIR edge) sees a request: a
 * request line or headers it cannot parse, headers over the size limit, an unknown method, an
 * `Expect` it does not meet, CONNECT. Each becomes an OperationOutcome like every other error.
 */

function raw(socket: Duplex, e: FhirError): void {
  const body = JSON.stringify(outcomeOf(e));
  const headers = [
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}`,
    'Content-Type: application/fhir+json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Request-Id: ${randomUUID()}`,
    'Connection: close',
    ...Object.entries(e.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
}

/** The answer to a parse error of Node's HTTP parser (llhttp error codes). */
export function clientErrorOutcome(code: string | undefined): FhirError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new FhirError(431, 'too-costly', 'MSG_HEADERS_TOO_LARGE', 'The request headers are too large');
    case 'HPE_INVALID_METHOD':
      return new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', 'The request method is not known to this server', undefined, { Allow: ALLOW });
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new FhirError(408, 'timeout', 'MSG_REQUEST_TIMEOUT', 'The request was not received in time');
    case 'HPE_URI_OVERFLOW':
      return new FhirError(414, 'too-costly', 'MSG_URI_TOO_LONG', 'The request URL is too long');
    default:
      return new FhirError(400, 'invalid', 'MSG_BAD_REQUEST_LINE', 'The request could not be parsed as HTTP/1.1 (request line, headers or framing)');
  }
}

export function guardServer(server: http.Server, logger: Logger): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A connection reset or one already answering cannot take a response.
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const e = clientErrorOutcome(err.code);
    logger.info({ code: err.code, status: e.status }, 'request refused by the HTTP parser');
    raw(socket, e);
  });
  server.on('checkExpectation', (_req: http.IncomingMessage, res: http.ServerResponse) => {
    const e = new FhirError(417, 'not-supported', 'MSG_EXPECTATION_FAILED', 'Only "Expect: 100-continue" is supported');
    const body = JSON.stringify(outcomeOf(e));
    res.writeHead(417, { 'Content-Type': 'application/fhir+json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
    res.end(body);
  });
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    raw(socket, new FhirError(405, 'not-supported', 'MSG_OP_NOT_ALLOWED', 'CONNECT is not supported', undefined, { Allow: ALLOW }));
  });
}
