package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderReads returns kv with Get answered by its stream's leader.
//
// nats.go reads a bucket with direct gets, which any replica of a
// replicated stream answers, followers included: a follower that has not
// applied a write yet answers with the value before it, or "not found"
// for a key just created. For coordination state that is wrong — a
// replica that took a slot and reads it back may be told it is not there,
// and conclude that another replica took its work over. A message get
// through the JetStream API ($JS.API.STREAM.MSG.GET) is answered by the
// stream leader only, which has every acknowledged write. Writes, watches
// and key listings are kv's own.
func LeaderReads(nc *nats.Conn, kv jetstream.KeyValue) jetstream.KeyValue {
	return &leaderKV{KeyValue: kv, nc: nc}
}

type leaderKV struct {
	jetstream.KeyValue
	nc *nats.Conn
}

// leaderGetTimeout bounds a read whose context has no deadline, as
// nats.go bounds its own requests.
const leaderGetTimeout = 5 * time.Second

// Get reads key's last value from the stream leader; a deleted or purged
// key is jetstream.ErrKeyNotFound, as kv.Get has it.
func (l *leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, leaderGetTimeout)
		defer cancel()
	}
	bucket := l.Bucket()
	req, err := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	if err != nil {
		return nil, err
	}
	msg, err := l.nc.RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s from the stream leader: %w", bucket, key, err)
	}
	var resp struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq     uint64    `json:"seq"`
			Headers []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("get %s/%s: decode the leader's answer: %w", bucket, key, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, fmt.Errorf("get %s/%s: %s (code %d)", bucket, key, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, errors.New("empty answer"))
	}
	e := &leaderEntry{bucket: bucket, key: key, value: resp.Message.Data, rev: resp.Message.Seq, created: resp.Message.Time}
	if len(resp.Message.Headers) > 0 {
		hdr, err := nats.DecodeHeadersMsg(resp.Message.Headers)
		if err != nil {
			return nil, fmt.Errorf("get %s/%s: decode headers: %w", bucket, key, err)
		}
		switch hdr.Get("KV-Operation") {
		case "DEL", "PURGE":
			return nil, jetstream.ErrKeyNotFound
		}
	}
	return e, nil
}

type leaderEntry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
}

func (e *leaderEntry) Bucket() string                  { return e.bucket }
func (e *leaderEntry) Key() string                     { return e.key }
func (e *leaderEntry) Value() []byte                   { return e.value }
func (e *leaderEntry) Revision() uint64                { return e.rev }
func (e *leaderEntry) Created() time.Time              { return e.created }
func (e *leaderEntry) Delta() uint64                   { return 0 }
func (e *leaderEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// GetAskingAgain reads key from kv, giving each read timeout and asking
// again while a read goes unanswered and ctx allows: a reply lost while a
// NATS node restarts would otherwise hold the caller until its own
// deadline. Reads change nothing, so asking again is safe.
func GetAskingAgain(ctx context.Context, kv jetstream.KeyValue, key string, timeout time.Duration) (jetstream.KeyValueEntry, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		e, err := kv.Get(rctx, key)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			continue
		}
		return e, err
	}
}
