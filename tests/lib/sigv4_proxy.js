// A proxy for the S3 tests that checks SigV4 signatures, which s3rver does not: each request's
// Authorization header is signed again here with AWS's own signer (@smithy/signature-v4) and the
// known credentials; a match goes on to s3rver (body streamed through), a mismatch gets S3's 403
// SignatureDoesNotMatch. A body whose x-amz-content-sha256 is a hash must hash to it.
//   node sigv4_proxy.js LISTEN_ADDRESS UPSTREAM_URL   (env SIGV4_ACCESS_KEY, SIGV4_SECRET, SIGV4_REGION)
// Prints "sigv4 proxy listening on ADDRESS:PORT" once it accepts connections; refusals go to stderr.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { SignatureV4, getCanonicalHeaders } = require('@smithy/signature-v4');
const { Hash } = require('@smithy/hash-node');

const [address, upstreamUrl] = process.argv.slice(2);
const upstream = new URL(upstreamUrl);
const accessKey = process.env.SIGV4_ACCESS_KEY;
const region = process.env.SIGV4_REGION || 'us-east-1';
const sha256 = Hash.bind(null, 'sha256');
// uriEscapePath false: S3 encodes the path once (we pass it canonically encoded), not twice.
const signer = new SignatureV4({
    credentials: { accessKeyId: accessKey, secretAccessKey: process.env.SIGV4_SECRET },
    region, service: 's3', sha256, uriEscapePath: false, applyChecksum: false,
});
const agent = new http.Agent({ keepAlive: true });

const xmlEscape = (text) => String(text).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

function refuse(req, res, status, code, message, extra = {}) {
    console.error(`refused ${req.method} ${req.url}: ${code}: ${message}`);
    const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + '</Code><Message>' +
        xmlEscape(message) + '</Message>' +
        Object.entries(extra).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join('') + '</Error>';
    // Answer once the body is read: a client still sending would see a reset, not the error.
    req.resume();
    const send = () => {
        if (res.headersSent) return;
        res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
    };
    if (req.readableEnded) send(); else req.on('end', send);
}

// RFC 3986 encoding as SigV4 wants it (encodeURIComponent leaves !'()* alone).
const escape = (text) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());

// What S3 signs from the URL: the path and query decoded, then encoded canonically, so a client
// that signs a non-canonical form of what it sends does not match.
function canonicalUrl(rawUrl) {
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const path = rawPath.split('/').map((segment) => escape(decodeURIComponent(segment))).join('/');
    const query = {};
    for (const pair of (q < 0 ? '' : rawUrl.slice(q + 1)).split('&')) {
        if (pair === '') continue;
        const eq = pair.indexOf('=');
        const key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
        const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
        query[key] = key in query ? [].concat(query[key], value) : value;
    }
    return { path, query };
}

async function check(req, res) {
    const auth = /^AWS4-HMAC-SHA256 Credential=([^/]*)\/([^,]*), ?SignedHeaders=([^,]*), ?Signature=([0-9a-f]*)$/
        .exec(req.headers.authorization || '');
    if (!auth) {
        const presigned = /[?&]X-Amz-Signature=/.test(req.url);
        return refuse(req, res, 403, 'AccessDenied', presigned
            ? 'this test proxy checks Authorization headers only, not presigned URLs'
            : 'no AWS4-HMAC-SHA256 Authorization header');
    }
    const [, keyId, scope, signedList, signature] = auth;
    if (keyId !== accessKey)
        return refuse(req, res, 403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    const date = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(req.headers['x-amz-date'] || '');
    if (!date) return refuse(req, res, 403, 'AccessDenied', 'no valid x-amz-date header');
    const signingDate = new Date(Date.UTC(date[1], date[2] - 1, date[3], date[4], date[5], date[6]));
    if (Math.abs(Date.now() - signingDate) > 15 * 60 * 1000)
        return refuse(req, res, 403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
    const payload = req.headers['x-amz-content-sha256'];
    if (!payload) return refuse(req, res, 400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
    if (payload !== 'UNSIGNED-PAYLOAD' && !/^[0-9a-f]{64}$/.test(payload))
        return refuse(req, res, 501, 'NotImplemented', `this test proxy does not check payloads signed as ${payload}`);

    // Sign the request again over exactly the headers the client says it signed.
    const names = signedList.split(';');
    const headers = {};
    for (const name of names) {
        if (req.headers[name] === undefined)
            return refuse(req, res, 403, 'SignatureDoesNotMatch', `signed header ${name} is not in the request`);
        headers[name] = String(req.headers[name]);
    }
    let url;
    try { url = canonicalUrl(req.url); } catch { return refuse(req, res, 400, 'InvalidURI', 'Couldn\'t parse the specified URI.'); }
    const request = { method: req.method, protocol: 'http:', hostname: upstream.hostname, path: url.path, query: url.query, headers };
    const signed = await signer.sign(request, { signingDate, signableHeaders: new Set(names) });
    const wanted = /Signature=([0-9a-f]*)/.exec(signed.headers.authorization)[1];
    const wantedScope = /Credential=[^/]*\/([^,]*)/.exec(signed.headers.authorization)[1];
    if (wanted !== signature || wantedScope !== scope) {
        return refuse(req, res, 403, 'SignatureDoesNotMatch',
            'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
            { AWSAccessKeyId: keyId, CredentialScope: wantedScope,
              CanonicalRequest: signer.createCanonicalRequest(request, getCanonicalHeaders(request, undefined, new Set(names)), payload) });
    }
    forward(req, res, payload === 'UNSIGNED-PAYLOAD' ? null : payload);
}

// Streams the request to s3rver. With a payload hash, the last chunk is held back until the body
// is hashed, so that s3rver never gets a whole body that does not match it.
function forward(req, res, payloadHash) {
    const headers = { ...req.headers };
    delete headers.expect;  // the 100-continue was ours to answer
    delete headers.connection;
    const out = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        res.flushHeaders();  // now: s3rver may never send a body it announced (a range of an empty object)
        answer.pipe(res);
    });
    out.on('error', (error) => {
        if (res.headersSent) res.destroy(); else refuse(req, res, 502, 'BadGateway', `s3rver: ${error.message}`);
    });
    // The client gave up (or stopped reading an answer it had enough of): so do we.
    req.on('close', () => { if (!req.complete) out.destroy(); });
    res.on('close', () => { if (!res.writableFinished) out.destroy(); });
    const hash = payloadHash && crypto.createHash('sha256');
    let held = null;
    req.on('data', (chunk) => {
        if (hash) hash.update(chunk);
        if (held && !out.write(held)) { req.pause(); out.once('drain', () => req.resume()); }
        held = chunk;
    });
    req.on('end', () => {
        const got = hash && hash.digest('hex');
        if (hash && got !== payloadHash) {
            out.destroy();
            return refuse(req, res, 400, 'XAmzContentSHA256Mismatch',
                'The provided \'x-amz-content-sha256\' header does not match what was computed.',
                { ClientComputedContentSHA256: payloadHash, S3ComputedContentSHA256: got });
        }
        out.end(held || undefined);
    });
}

const server = http.createServer((req, res) => {
    check(req, res).catch((error) => {
        console.error(error);
        refuse(req, res, 500, 'InternalError', String(error));
    });
});
server.listen(0, address, () => {
    const { address: host, port } = server.address();
    console.log(`sigv4 proxy listening on ${host}:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
