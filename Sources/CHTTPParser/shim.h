// The HTTP/1.1 request parser (Debian's libhttp-parser-dev, nodejs/http-parser 2.9), as the HTTP module sees it.
#ifndef APPROVALD_CHTTPPARSER_SHIM_H
#define APPROVALD_CHTTPPARSER_SHIM_H
#include <http_parser.h>

/// `HTTP_PARSER_ERRNO` is a macro.
static inline enum http_errno approvald_http_errno(const http_parser *parser) {
    return (enum http_errno)parser->http_errno;
}
#endif
