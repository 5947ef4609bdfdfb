/*
 * The reference ceiling: nghttp2 + libevent and nothing else. Every request gets 200 with the same headers and
 * body approvald's /healthz sends. Same I/O pattern as approvald's HTTP layer (a bufferevent per connection,
 * nghttp2_session_mem_recv over the input chains, nghttp2_session_mem_send into the output buffer up to 64 KiB),
 * so that h2load measures what the Swift layer costs on top of the stack it is built on.
 *
 * Usage: reference-server PORT   (listens on 127.0.0.1; prints "listening PORT" when ready)
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define OUTPUT_HIGH_WATER (64 * 1024)

static const char body[] = "ok\n";

typedef struct {
    struct bufferevent *bev;
    nghttp2_session *session;
} connection;

static void connection_free(connection *conn) {
    nghttp2_session_del(conn->session);
    bufferevent_free(conn->bev);
    free(conn);
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    (void)session; (void)stream_id; (void)source; (void)user_data;
    size_t n = sizeof(body) - 1;
    if (n > length) n = length;
    memcpy(buf, body, n);
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(NAME, VALUE) \
    { (uint8_t *)NAME, (uint8_t *)VALUE, sizeof(NAME) - 1, sizeof(VALUE) - 1, NGHTTP2_NV_FLAG_NONE }

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    (void)user_data;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        nghttp2_nv headers[] = {NV(":status", "200"), NV("content-type", "text/plain; charset=utf-8"),
                                NV("content-length", "3")};
        nghttp2_data_provider provider = {.read_callback = read_body};
        nghttp2_submit_response(session, frame->hd.stream_id, headers, 3, &provider);
    }
    return 0;
}

/* Serialises queued frames into the output buffer; returns -1 when the connection should close. */
static int flush(connection *conn) {
    struct evbuffer *output = bufferevent_get_output(conn->bev);
    while (evbuffer_get_length(output) < OUTPUT_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(conn->session, &data);
        if (n < 0) return -1;
        if (n == 0) break;
        evbuffer_add(output, data, (size_t)n);
    }
    if (!nghttp2_session_want_read(conn->session) && !nghttp2_session_want_write(conn->session) &&
        evbuffer_get_length(output) == 0)
        return -1;
    return 0;
}

static void on_read(struct bufferevent *bev, void *ctx) {
    connection *conn = ctx;
    struct evbuffer *input = bufferevent_get_input(bev);
    struct evbuffer_iovec vectors[8];
    while (evbuffer_get_length(input) > 0) {
        int count = evbuffer_peek(input, -1, NULL, vectors, 8);
        size_t consumed = 0;
        for (int i = 0; i < count && i < 8; i++) {
            ssize_t n = nghttp2_session_mem_recv(conn->session, vectors[i].iov_base, vectors[i].iov_len);
            if (n < 0) { connection_free(conn); return; }
            consumed += (size_t)n;
        }
        evbuffer_drain(input, consumed);
    }
    if (flush(conn) < 0) connection_free(conn);
}

static void on_write(struct bufferevent *bev, void *ctx) {
    (void)bev;
    connection *conn = ctx;
    if (flush(conn) < 0) connection_free(conn);
}

static void on_event(struct bufferevent *bev, short events, void *ctx) {
    (void)bev;
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) connection_free(ctx);
}

static nghttp2_session_callbacks *callbacks;

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *address, int length,
                      void *ctx) {
    (void)listener; (void)address; (void)length; (void)ctx;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connection *conn = calloc(1, sizeof(*conn));
    conn->bev = bufferevent_socket_new(evconnlistener_get_base(listener), fd,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    nghttp2_session_server_new(&conn->session, callbacks, conn);
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 128}};
    nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings, 1);
    bufferevent_setcb(conn->bev, on_read, on_write, on_event, conn);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    struct event_base *base = event_base_new();
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024, (struct sockaddr *)&address,
        sizeof(address));
    if (!listener) { perror("listen"); return 1; }
    printf("listening %s\n", argv[1]);
    fflush(stdout);
    event_base_dispatch(base);
    return 0;
}
