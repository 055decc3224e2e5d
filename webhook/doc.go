// Package webhook is ephemera's GitHub webhook endpoint. It verifies each
// delivery's HMAC-SHA256 signature over the raw body, reduces a
// workflow_job payload to a [jobs.Event], routes it to the first pool whose
// labels cover the job's labels, and stores it in JetStream with
// Nats-Msg-Id = X-GitHub-Delivery. It answers 2xx only once the event is
// stored (PubAck received) or was deliberately ignored, so a delivery
// GitHub records as successful is never lost.
//
// Checks run in this order, and the first that fails decides the answer:
//
//	method POST                         405
//	content type application/json      415
//	X-GitHub-Event, X-GitHub-Delivery   400
//	body within MaxBody                 413
//	body arrived within BodyTimeout     408
//	a slot for a body over 32 KiB       503 when none frees before BodyTimeout
//	X-Hub-Signature-256 matches         401
//	JSON, workflow_job valid            400
//	labels match a pool                 202 {"ignored":…} when not
//	stored in JetStream                 503 when not; 202 {"delivery":…,"pool":…}
//
// A body costs memory only as its bytes arrive: the buffer is never sized
// from Content-Length, so a client that declares a large body and sends it
// slowly holds a few hundred bytes, not max_body. Bodies over 32 KiB (no
// workflow_job delivery is that large) are read at most MaxBodies at once;
// a usual delivery never waits behind them.
//
// The headers are checked before the signature on purpose: the signature
// cannot be checked before the body is read, a request without the two
// GitHub headers is never a delivery worth reading, and answering 400 for
// a missing header tells an unauthenticated caller nothing it did not send
// itself. So a request missing X-GitHub-Event or X-GitHub-Delivery gets 400
// whether or not it is signed; everything after the headers (the body and
// what it says) is reported only to a caller with a valid signature.
package webhook
