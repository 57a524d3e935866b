package livehub_test

// The README's examples, compiled by go vet and go test (they have no
// Output comment, so they are not run).

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"time"

	livehub "github.com/livehub/livehub/clients/go"
)

func ExampleAPI_Publish() {
	ctx := context.Background()
	api := livehub.NewAPI("http://127.0.0.1:8080", "my-api-key")

	// Any value encoding/json takes; json.RawMessage goes out byte for byte.
	err := api.Publish(ctx, "orders", "created", json.RawMessage(`{"id":12345678901234567890,"total":1.10}`))
	var e *livehub.Error
	if errors.As(err, &e) {
		log.Printf("refused: HTTP %d, code %s: %s", e.Status, e.Code, e.Message)
	}

	// One request, many publications, one result each.
	results, err := api.PublishBatch(ctx, []livehub.Publication{
		{Channel: "orders", Event: "created", Data: map[string]int{"id": 1}},
		{Channel: "user:42", Event: "notice", Data: "your order is on its way"},
	})
	if err != nil {
		log.Fatal(err) // the request as a whole failed (401, network, ...)
	}
	for i, r := range results {
		if err := r.Err(); err != nil {
			log.Printf("publication %d: %v", i, err)
		}
	}
}

func ExampleDial_trustedPublisher() {
	ctx := context.Background()
	// With the API key the connection is a trusted publisher: any channel,
	// "*" included, no rate limit.
	pub, err := livehub.Dial(ctx, "ws://127.0.0.1:8080/ws", livehub.Options{
		APIKey:          "my-api-key",
		Reconnect:       true,
		DiscardMessages: true, // it publishes only
		OnError:         func(err error) { log.Print(err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	for i := 0; i < 10000; i++ {
		// No reply on success; a failure reaches OnError.
		if err := pub.PublishNoReply(ctx, "ticks", "tick", map[string]int{"n": i}); err != nil {
			log.Print(err)
		}
	}
	// Returns once everything sent before it took effect.
	if err := pub.Ping(ctx); err != nil {
		log.Print(err)
	}
	// Or one publication with a reply:
	if err := pub.Publish(ctx, "*", "announce", "maintenance at noon"); err != nil {
		log.Print(err)
	}
}

func ExampleDial_subscriber() {
	ctx := context.Background()
	client, err := livehub.Dial(ctx, "ws://127.0.0.1:8080/ws", livehub.Options{
		Reconnect: true,
		// A fresh token for every connection, and before each expires.
		GetToken: func(ctx context.Context) (string, error) {
			return fetchTokenFromMyBackend(ctx)
		},
		OnStateChange: func(s livehub.State, err error) { log.Printf("%v %v", s, err) },
	})
	if err != nil {
		log.Fatal(err) // e.g. a *livehub.CloseError with 4001: token refused
	}
	defer client.Close()

	if err := client.Subscribe(ctx, "news"); err != nil {
		log.Fatal(err) // e.g. code "forbidden"
	}
	for m := range client.Messages() {
		var article struct {
			Title string      `json:"title"`
			ID    json.Number `json:"id"` // big numbers keep their digits
		}
		if err := json.Unmarshal(m.Data, &article); err == nil {
			log.Printf("%s %s: %s", m.Channel, article.ID, article.Title)
		}
	}
	// Messages is closed: the client stopped for good.
	log.Printf("stopped: %v (close code %d)", client.Err(), livehub.CloseCode(client.Err()))
}

func fetchTokenFromMyBackend(context.Context) (string, error) { return "", nil }

// tokenHandler is the job a Go web application has: hand its logged-in
// user a connection token, signed with livehub.token-hmac-secret.
func Example_tokenHandler() {
	secret := []byte("the secret of --livehub.token-hmac-secret")
	http.HandleFunc("/api/live-token", func(w http.ResponseWriter, r *http.Request) {
		user, ok := currentUser(r) // the application's own session check
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		claims, _ := json.Marshal(map[string]interface{}{
			"sub":      user,
			"channels": []string{"news", "user:" + user},
			"iat":      time.Now().Unix(),
			"exp":      time.Now().Add(time.Hour).Unix(),
		})
		enc := base64.RawURLEncoding.EncodeToString
		unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(claims)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(unsigned))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": unsigned + "." + enc(mac.Sum(nil))})
	})
}

func currentUser(*http.Request) (string, bool) { return "alice", true }
