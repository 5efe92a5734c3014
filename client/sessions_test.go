package client

import (
	"context"
	"errors"
	"net/http"
	"testing"
)

func TestSessions(t *testing.T) {
	srv, s := gateway(t, http.StatusOK, "application/json", `{"userId":"user-42","sessions":[
		{"id":"q5mJb0xv1dI3c9TQ2fA7ZA","createdAt":"2026-11-23T10:03:25Z","lastSeenAt":"2026-11-23T10:41:02Z","expiresAt":"2026-11-23T11:11:02Z","createdBy":"emr-org-a"}]}`)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	list, err := c.Sessions(context.Background(), "user-42")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "q5mJb0xv1dI3c9TQ2fA7ZA" || list[0].CreatedBy != "emr-org-a" || list[0].LastSeenAt.Minute() != 41 {
		t.Errorf("sessions = %+v", list)
	}
	if s.method != http.MethodGet || s.path != "/sso/sessions" || s.rawQuery != "userId=user-42" {
		t.Errorf("request: %s %s?%s", s.method, s.path, s.rawQuery)
	}
	if _, err := c.Sessions(context.Background(), ""); err == nil {
		t.Error("Sessions with an empty user id")
	}
	srv, _ = gateway(t, http.StatusOK, "application/json", `{"userId":"user-42"}`)
	c = &Client{BaseURL: srv.URL, APIKey: testKey}
	if _, err := c.Sessions(context.Background(), "user-42"); err == nil {
		t.Error("missing sessions field accepted")
	}
}

func TestEndSession(t *testing.T) {
	srv, s := gateway(t, http.StatusOK, "application/json", `{"id":"q5mJb0xv1dI3c9TQ2fA7ZA","userId":"user-42","revoked":1}`)
	c := &Client{BaseURL: srv.URL, APIKey: testKey}
	if err := c.EndSession(context.Background(), "q5mJb0xv1dI3c9TQ2fA7ZA"); err != nil {
		t.Fatal(err)
	}
	if s.method != http.MethodDelete || s.path != "/sso/sessions/q5mJb0xv1dI3c9TQ2fA7ZA" || s.rawQuery != "" {
		t.Errorf("request: %s %s?%s", s.method, s.path, s.rawQuery)
	}
	for _, bad := range []string{"", "../tokens", "q5mJb0xv1dI3c9TQ2fA7Z/", "short"} {
		if err := c.EndSession(context.Background(), bad); err == nil {
			t.Errorf("EndSession(%q) sent", bad)
		}
	}
	srv, _ = gateway(t, http.StatusNotFound, "application/json", `{"error":"No such session in this credential's scope.","code":"session_not_found"}`)
	c = &Client{BaseURL: srv.URL, APIKey: testKey}
	var apiErr *APIError
	if err := c.EndSession(context.Background(), "q5mJb0xv1dI3c9TQ2fA7ZA"); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "session_not_found" {
		t.Errorf("404: %v", err)
	}
}
