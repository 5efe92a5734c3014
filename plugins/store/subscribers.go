package store

import "sync"

// Subscribers is a set of invalidation callbacks, for Store implementations.
// The zero value is ready to use.
type Subscribers struct {
	mu   sync.RWMutex
	next int
	fns  map[int]func(Invalidation)
}

// Add registers fn and returns the function that removes it.
func (s *Subscribers) Add(fn func(Invalidation)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = make(map[int]func(Invalidation))
	}
	id := s.next
	s.next++
	s.fns[id] = fn
	return func() {
		s.mu.Lock()
		delete(s.fns, id)
		s.mu.Unlock()
	}
}

// Publish calls every registered callback with inv.
func (s *Subscribers) Publish(inv Invalidation) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.fns {
		fn(inv)
	}
}
