package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/ssogate/ssogate/client"
)

func ExampleClient_Mint() {
	// A stand-in for the gateway, answering as a credential that may not
	// mint for this user would.
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"user not in this credential's scope","code":"forbidden_scope"}`)
	}))
	defer gw.Close()

	c := &client.Client{BaseURL: gw.URL, APIKey: "sk_live_example"}
	tok, err := c.Mint(context.Background(), client.MintRequest{UserID: "user-42", Redirect: "/patients/7"})
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr):
		fmt.Println(apiErr.StatusCode, apiErr.Code)
		fmt.Println(err)
	case err != nil:
		fmt.Println("gateway unreachable:", err)
	default:
		fmt.Println("sign-in link:", tok.URL)
	}
	// Output:
	// 403 forbidden_scope
	// ssogate: 403 forbidden_scope: user not in this credential's scope
}
