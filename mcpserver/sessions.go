package mcpserver

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// deleteTimeout bounds one sandbox delete made on a session's end, when no
// request context is left to bound it.
const deleteTimeout = time.Minute

// sessions remembers which sandboxes each MCP session created, so that
// they go when the session does (stdio EOF, an HTTP session closed or
// expired, server shutdown) unless the create asked to keep them.
type sessions struct {
	api *client.Client
	log *slog.Logger

	mu       sync.Mutex
	owned    map[*mcp.ServerSession]map[string]bool // sandbox ids per live session
	ended    map[*mcp.ServerSession]bool            // sessions whose sandboxes went already
	closed   bool                                   // the server shut down
	deleting sync.WaitGroup                         // deletes of ended sessions' sandboxes under way
}

func newSessions(api *client.Client, log *slog.Logger) *sessions {
	return &sessions{api: api, log: log, owned: map[*mcp.ServerSession]map[string]bool{}, ended: map[*mcp.ServerSession]bool{}}
}

// add records that ss created sandbox id. A sandbox whose session ended
// while it was being created is deleted at once: nobody is left to use it.
func (s *sessions) add(ss *mcp.ServerSession, id string) {
	s.mu.Lock()
	if s.closed || s.ended[ss] {
		s.mu.Unlock()
		s.deleteAll([]string{id})
		return
	}
	ids, watched := s.owned[ss]
	if !watched {
		ids = map[string]bool{}
		s.owned[ss] = ids
		go func() {
			_ = ss.Wait()
			s.end(ss)
		}()
	}
	ids[id] = true
	s.mu.Unlock()
}

// forget stops tracking id (it was deleted through a tool).
func (s *sessions) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ids := range s.owned {
		delete(ids, id)
	}
}

// owns reports whether ss created id and will delete it when it ends.
func (s *sessions) owns(ss *mcp.ServerSession, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owned[ss][id]
}

// endedMemory is how long an ended session is remembered, so that a
// create still under way when it ended (a cold boot takes minutes) is
// deleted as it finishes.
const endedMemory = 15 * time.Minute

// end deletes the sandboxes of a session that is over.
func (s *sessions) end(ss *mcp.ServerSession) {
	s.mu.Lock()
	ids := s.owned[ss]
	delete(s.owned, ss)
	s.ended[ss] = true
	s.deleting.Add(1) // under mu: close waits for it
	s.mu.Unlock()
	defer s.deleting.Done()
	time.AfterFunc(endedMemory, func() {
		s.mu.Lock()
		delete(s.ended, ss)
		s.mu.Unlock()
	})
	s.deleteAll(keys(ids))
}

// close deletes every tracked sandbox of every session and waits for the
// deletes that ended sessions started. Sessions still open keep running
// but their sandboxes are gone, and any they create is deleted at once.
func (s *sessions) close() {
	s.mu.Lock()
	s.closed = true
	var ids []string
	for ss, owned := range s.owned {
		ids = append(ids, keys(owned)...)
		s.ended[ss] = true
	}
	s.owned = map[*mcp.ServerSession]map[string]bool{}
	s.mu.Unlock()
	s.deleteAll(ids)
	s.deleting.Wait()
}

func (s *sessions) deleteAll(ids []string) {
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
			defer cancel()
			err := s.api.Delete(ctx, id)
			var apiErr *client.Error
			if errors.As(err, &apiErr) && apiErr.Code == model.CodeNotFound {
				err = nil // deleted by someone else already
			}
			if err != nil {
				s.log.Warn("delete a sandbox of an ended MCP session", "sandbox", id, "err", err)
			} else {
				s.log.Info("deleted a sandbox of an ended MCP session", "sandbox", id)
			}
		})
	}
	wg.Wait()
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
