package livehub_test

// The README's examples, compiled by go vet and go test (they have no
// Output comment, so they are not run).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
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
	secret := []byte(os.Getenv("LIVEHUB_TOKEN_SECRET")) // the server's --livehub.token-hmac-secret

	http.HandleFunc("/api/livehub-token", func(w http.ResponseWriter, r *http.Request) {
		user, ok := currentUser(r) // your application's own session check
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		info, _ := json.Marshal(map[string]string{"name": user.Name}) // shown in presence
		token, err := livehub.ConnectionToken(secret, livehub.ConnectionClaims{
			Subject:   user.ID,                                       // "sub": who this is
			ExpiresAt: time.Now().Add(time.Hour),                     // "exp": clients refresh before it
			Channels:  []string{"news", "user:" + user.ID, "room:*"}, // may subscribe to (globs)
			Publish:   []string{"room:*"},                            // may publish to
			Info:      info,                                          // at most 1 KiB
		})
		if err != nil {
			http.Error(w, "no token", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]string{"token": token}) //nolint:errcheck // the client went away
	})
}

// A subscription token opens one channel outside the token's channels, for
// one user, after the application's own check.
func ExampleSubscriptionToken() {
	secret := []byte(os.Getenv("LIVEHUB_TOKEN_SECRET"))
	http.HandleFunc("/api/livehub-subscription-token", func(w http.ResponseWriter, r *http.Request) {
		user, ok := currentUser(r)
		channel := r.URL.Query().Get("channel")
		if !ok || !mayRead(user, channel) { // your application's rule
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		token, err := livehub.SubscriptionToken(secret, user.ID, channel, time.Now().Add(10*time.Minute))
		if err != nil {
			http.Error(w, "no token", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string]string{"token": token}) //nolint:errcheck // the client went away
	})
}

type user struct{ ID, Name string }

func currentUser(*http.Request) (user, bool) { return user{ID: "42", Name: "Ada"}, true }

func mayRead(user, string) bool { return true }

func ExampleAPI_History() {
	ctx := context.Background()
	api := livehub.NewAPI("http://127.0.0.1:8080", "my-api-key")
	page, err := api.History(ctx, "chat:lobby", 50) // the last 50, oldest first
	if err != nil {
		log.Fatal(err) // e.g. code bad_command: no history channel
	}
	for _, m := range page.Publications {
		log.Printf("#%d %s %s", m.Offset, m.Type, m.Data)
	}
	log.Printf("the stream is at %d in epoch %s", page.Offset, page.Epoch)
}

func ExampleClient_SubscribeWith() {
	ctx := context.Background()
	client, err := livehub.Dial(ctx, "ws://127.0.0.1:8080/ws", livehub.Options{Reconnect: true})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Resume where a previous run of this process stopped.
	saved := livehub.Position{Offset: 41, Epoch: "k3x9q2ab"}
	res, err := client.SubscribeWith(ctx, "chat:lobby", livehub.SubscribeOptions{Since: &saved})
	if err != nil {
		log.Fatal(err)
	}
	epoch := res.Epoch
	if !*res.Recovered {
		reloadLobby() // nothing was sent from history; live from res.Offset+1
	}
	for m := range client.Messages() {
		switch {
		case m.Recovery != nil: // after a reconnect or a gap, some were lost
			epoch = m.Recovery.Epoch
			reloadLobby()
		case m.Type == "join" || m.Type == "leave": // on presence channels
			var who livehub.ClientInfo
			if json.Unmarshal(m.Data, &who) == nil {
				log.Printf("%s: %s %s", m.Channel, who.User, m.Type)
			}
		default:
			saved = livehub.Position{Offset: m.Offset, Epoch: epoch}
			log.Printf("#%d %s", m.Offset, m.Data)
		}
	}
}

func reloadLobby() {}

func ExampleClient_Presence() {
	ctx := context.Background()
	client, err := livehub.Dial(ctx, "ws://127.0.0.1:8080/ws", livehub.Options{
		Info: map[string]string{"name": "Ada"}, // servers without token keys; else the token's info
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err := client.Subscribe(ctx, "room:lobby"); err != nil {
		log.Fatal(err)
	}
	who, err := client.Presence(ctx, "room:lobby")
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range who {
		log.Printf("%s %s %s", c.Client, c.User, c.Info)
	}
	clients, users, err := client.PresenceStats(ctx, "room:lobby")
	if err == nil {
		log.Printf("%d connections of %d users", clients, users)
	}
}

func ExampleFilter() {
	// English, and urgent or addressed to ada or everyone.
	f := livehub.And(
		livehub.Eq("lang", "en"),
		livehub.Or(livehub.Gte("prio", 3), livehub.In("to", "ada", "all")),
	)
	fmt.Println(f)
	// Output: {"and":[{"key":"lang","op":"eq","value":"en"},{"or":[{"key":"prio","op":"gte","value":3},{"key":"to","op":"in","values":["ada","all"]}]}]}
}

func ExampleAPI_PublishWith() {
	ctx := context.Background()
	api := livehub.NewAPI("http://127.0.0.1:8080", "my-api-key")
	err := api.PublishWith(ctx, livehub.Publication{
		Channel: "orders",
		Event:   "created",
		Data:    map[string]int{"id": 1234},
		Tags:    map[string]string{"region": "eu", "total": "250"}, // for subscribers' filters
	})
	if err != nil {
		log.Fatal(err) // e.g. code bad_command: more than 16 tags
	}
}

func ExampleClient_SubscribeWith_filter() {
	ctx := context.Background()
	client, err := livehub.Dial(ctx, "ws://127.0.0.1:8080/ws", livehub.Options{Reconnect: true})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Only the European orders of at least 100; kept across reconnects.
	big := livehub.And(livehub.Eq("region", "eu"), livehub.Gte("total", 100))
	if _, err := client.SubscribeWith(ctx, "orders", livehub.SubscribeOptions{Filter: big}); err != nil {
		log.Fatal(err) // e.g. code bad_command: a filter the server does not take
	}
	for m := range client.Messages() {
		log.Printf("%s %s total %s", m.Type, m.Data, m.Tags["total"])
	}
}
