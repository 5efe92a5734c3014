package strictjson

import (
	"strings"
	"testing"
)

type mint struct {
	UserID   string            `json:"userId"`
	Redirect string            `json:"redirect"`
	Claims   map[string]string `json:"claims"`
	skipped  string
}

func TestUnmarshalAccepts(t *testing.T) {
	var m mint
	if err := Unmarshal([]byte(`{"userId":"alice","redirect":"/x","claims":{"role":"nurse"}}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.UserID != "alice" || m.Redirect != "/x" || m.Claims["role"] != "nurse" || m.skipped != "" {
		t.Fatalf("decoded %+v", m)
	}
	if err := Unmarshal([]byte(` {} `), &m); err != nil {
		t.Fatalf("empty object: %v", err)
	}
}

// TestUnmarshalRefuses says what each bad body gets: an error naming the field.
func TestUnmarshalRefuses(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"USERID":"a"}`, `unknown field "USERID" (did you mean "userId"?`},
		{`{"userid":"a"}`, `unknown field "userid" (did you mean "userId"?`},
		{`{"userId":"a","userId":"b"}`, `field "userId" given twice`},
		{`{"claims":{"role":"a","role":"b"}}`, `field "claims": key "role" given twice`},
		{`{"user":"a"}`, `unknown field "user"`},
		{`{"userId":"a"} {}`, `data after the JSON object`},
		{`{"userId":"a"}x`, `data after the JSON object`},
		{`["userId"]`, `not a JSON object`},
		{`"x"`, `not a JSON object`},
		{``, `not a JSON object`},
		{"{\"userId\":\"\xff\"}", `not UTF-8`},
		{`{"userId":1}`, `field "userId": want string, got number`},
		{`{"claims":{"k":1}}`, `field "claims": want string`},
		{`{"userId":"a"`, `EOF`},
		{`{"skipped":"a"}`, `unknown field "skipped"`},
	} {
		var m mint
		err := Unmarshal([]byte(c.body), &m)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.body, err, c.want)
		}
	}
}

func TestUnmarshalWantsStructPointer(t *testing.T) {
	var m map[string]string
	if err := Unmarshal([]byte(`{}`), &m); err == nil {
		t.Fatal("a map target was accepted")
	}
}
