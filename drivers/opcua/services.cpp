#include "drivers/opcua/services.hpp"

#include "drivers/opcua/detail.hpp"
#include "drivers/opcua/names.hpp"

#include <cstdio>
#include <utility>

namespace fabrik::opcua {
namespace {

using detail::check_end;
using detail::expect_type;
using detail::fail_at;
using detail::in;
using detail::write_type;

// ---- Writing helpers --------------------------------------------------------------------

/// Empty Strings and ByteStrings are written null.
void put(writer& w, std::string_view s) {
  if (s.empty())
    w.write(int32_t{-1});
  else
    w.write(s);
}
void put(writer& w, const byte_string& b) { put(w, std::string_view{b.bytes}); }
void put(writer& w, const qualified_name& q) {
  w.write(q.namespace_index);
  put(w, std::string_view{q.name});
}

template <class T, class F>
void put_array(writer& w, const std::vector<T>& v, F&& one) {
  w.write(static_cast<int32_t>(v.size()));
  for (const auto& e : v)
    one(w, e);
}

void put_strings(writer& w, const std::vector<std::string>& v) {
  put_array(w, v, [](writer& w, const std::string& s) { put(w, std::string_view{s}); });
}

void put_empty_diagnostics(writer& w) { w.write(int32_t{0}); }

void put(writer& w, const application_description& d) {
  put(w, std::string_view{d.application_uri});
  put(w, std::string_view{d.product_uri});
  w.write(d.application_name);
  w.write(static_cast<int32_t>(d.type));
  put(w, std::string_view{d.gateway_server_uri});
  put(w, std::string_view{d.discovery_profile_uri});
  put_strings(w, d.discovery_urls);
}

void put(writer& w, const signature_data& s) {
  put(w, std::string_view{s.algorithm});
  put(w, s.signature);
}

void put(writer& w, const signed_software_certificate& c) {
  put(w, c.certificate_data);
  put(w, c.signature);
}

void put(writer& w, const user_token_policy& p) {
  put(w, std::string_view{p.policy_id});
  w.write(static_cast<int32_t>(p.token_type));
  put(w, std::string_view{p.issued_token_type});
  put(w, std::string_view{p.issuer_endpoint_url});
  put(w, std::string_view{p.security_policy_uri});
}

void put(writer& w, const endpoint_description& e) {
  put(w, std::string_view{e.endpoint_url});
  put(w, e.server);
  put(w, e.server_certificate);
  w.write(static_cast<int32_t>(e.mode));
  put(w, std::string_view{e.security_policy_uri});
  put_array(w, e.user_identity_tokens, [](writer& w, const user_token_policy& p) { put(w, p); });
  put(w, std::string_view{e.transport_profile_uri});
  w.write(e.security_level);
}

void put(writer& w, const read_value_id& v) {
  w.write(v.node);
  w.write(v.attribute_id);
  put(w, std::string_view{v.index_range});
  put(w, v.data_encoding);
}

void put_statuses(writer& w, const std::vector<status_code>& v) {
  put_array(w, v, [](writer& w, status_code s) { w.write(s); });
}

void put_uint32s(writer& w, const std::vector<uint32_t>& v) {
  put_array(w, v, [](writer& w, uint32_t u) { w.write(u); });
}

// ---- Reading helpers --------------------------------------------------------------------

/// Reads an array's length and checks it: -1 (null) reads as 0; refuses other negative
/// lengths, more than max_array_length, and more elements than the bytes left could hold
/// at min_size bytes each.
expected<size_t> read_length(reader& r, const std::string& what, size_t min_size) {
  size_t at = r.offset();
  auto n = r.read_int32();
  if (!n)
    return in(what + " length", n.err());
  if (*n < -1)
    return fail_at(at, what + " has negative length " + std::to_string(*n));
  if (*n <= 0)
    return size_t{0};
  if (*n > max_array_length)
    return fail_at(at, what + " of " + std::to_string(*n) + " elements is over the limit of "
                         + std::to_string(max_array_length));
  if (static_cast<size_t>(*n) > r.remaining() / min_size)
    return fail_at(at, what + " claims " + std::to_string(*n) + " elements, only "
                         + std::to_string(r.remaining()) + " bytes left");
  return static_cast<size_t>(*n);
}

template <class T, class F>
expected<std::vector<T>> read_array(reader& r, const std::string& what, size_t min_size, F&& one) {
  auto n = read_length(r, what, min_size);
  if (!n)
    return n.err();
  std::vector<T> out;
  out.reserve(*n);
  for (size_t i = 0; i < *n; ++i) {
    auto v = one(r);
    if (!v)
      return in(what + "[" + std::to_string(i) + "]", v.err());
    out.push_back(std::move(*v));
  }
  return out;
}

expected<std::vector<std::string>> read_strings(reader& r, const std::string& what) {
  return read_array<std::string>(r, what, 4, [](reader& r) { return r.read_string(); });
}

/// A DiagnosticInfo array: only empty DiagnosticInfos (mask 0) are accepted.
expected<void> read_empty_diagnostics(reader& r, const std::string& what) {
  auto n = read_length(r, what, 1);
  if (!n)
    return n.err();
  for (size_t i = 0; i < *n; ++i) {
    size_t at = r.offset();
    auto mask = r.read_byte();
    if (!mask)
      return in(what, mask.err());
    if (*mask != 0)
      return fail_at(at, what + "[" + std::to_string(i) + "]: non-empty DiagnosticInfo (mask "
                           + std::to_string(*mask) + ") is not supported");
  }
  return {};
}

expected<std::vector<status_code>> read_statuses(reader& r, const std::string& what) {
  return read_array<status_code>(r, what, 4, [](reader& r) { return r.read_status_code(); });
}

expected<std::vector<uint32_t>> read_uint32s(reader& r, const std::string& what) {
  return read_array<uint32_t>(r, what, 4, [](reader& r) { return r.read_uint32(); });
}

template <class E>
expected<E> read_enum(reader& r, const std::string& what, int32_t max) {
  size_t at = r.offset();
  auto v = r.read_int32();
  if (!v)
    return in(what, v.err());
  if (*v < 0 || *v > max)
    return fail_at(at, what + " " + std::to_string(*v) + " is unknown");
  return static_cast<E>(*v);
}

expected<application_description> read_application_description(reader& r) {
  application_description d;
  OPCUA_READ(d.application_uri, r.read_string(), "ApplicationDescription application uri");
  OPCUA_READ(d.product_uri, r.read_string(), "ApplicationDescription product uri");
  OPCUA_READ(d.application_name, r.read_localized_text(),
             "ApplicationDescription application name");
  OPCUA_READ(d.type, read_enum<application_type>(r, "ApplicationDescription application type", 3),
             "ApplicationDescription");
  OPCUA_READ(d.gateway_server_uri, r.read_string(), "ApplicationDescription gateway server uri");
  OPCUA_READ(d.discovery_profile_uri, r.read_string(),
             "ApplicationDescription discovery profile uri");
  OPCUA_READ(d.discovery_urls, read_strings(r, "ApplicationDescription discovery urls"),
             "ApplicationDescription");
  return d;
}

expected<signature_data> read_signature_data(reader& r) {
  signature_data s;
  OPCUA_READ(s.algorithm, r.read_string(), "SignatureData algorithm");
  OPCUA_READ(s.signature, r.read_byte_string(), "SignatureData signature");
  return s;
}

expected<signed_software_certificate> read_signed_software_certificate(reader& r) {
  signed_software_certificate c;
  OPCUA_READ(c.certificate_data, r.read_byte_string(), "SignedSoftwareCertificate data");
  OPCUA_READ(c.signature, r.read_byte_string(), "SignedSoftwareCertificate signature");
  return c;
}

expected<std::vector<signed_software_certificate>> read_certificates(reader& r,
                                                                     const std::string& what) {
  return read_array<signed_software_certificate>(r, what, 8, read_signed_software_certificate);
}

expected<user_token_policy> read_user_token_policy(reader& r) {
  user_token_policy p;
  OPCUA_READ(p.policy_id, r.read_string(), "UserTokenPolicy policy id");
  OPCUA_READ(p.token_type, read_enum<user_token_type>(r, "UserTokenPolicy token type", 3),
             "UserTokenPolicy");
  OPCUA_READ(p.issued_token_type, r.read_string(), "UserTokenPolicy issued token type");
  OPCUA_READ(p.issuer_endpoint_url, r.read_string(), "UserTokenPolicy issuer endpoint url");
  OPCUA_READ(p.security_policy_uri, r.read_string(), "UserTokenPolicy security policy uri");
  return p;
}

expected<endpoint_description> read_endpoint_description(reader& r) {
  endpoint_description e;
  OPCUA_READ(e.endpoint_url, r.read_string(), "EndpointDescription endpoint url");
  OPCUA_READ(e.server, read_application_description(r), "EndpointDescription server");
  OPCUA_READ(e.server_certificate, r.read_byte_string(), "EndpointDescription server certificate");
  OPCUA_READ(e.mode, read_enum<security_mode>(r, "EndpointDescription security mode", 3),
             "EndpointDescription");
  OPCUA_READ(e.security_policy_uri, r.read_string(), "EndpointDescription security policy uri");
  OPCUA_READ(e.user_identity_tokens,
             read_array<user_token_policy>(r, "EndpointDescription user identity tokens", 20,
                                           read_user_token_policy),
             "EndpointDescription");
  OPCUA_READ(e.transport_profile_uri, r.read_string(), "EndpointDescription transport profile uri");
  OPCUA_READ(e.security_level, r.read_byte(), "EndpointDescription security level");
  return e;
}

expected<read_value_id> read_read_value_id(reader& r) {
  read_value_id v;
  OPCUA_READ(v.node, r.read_node_id(), "ReadValueId node id");
  OPCUA_READ(v.attribute_id, r.read_uint32(), "ReadValueId attribute id");
  OPCUA_READ(v.index_range, r.read_string(), "ReadValueId index range");
  OPCUA_READ(v.data_encoding, r.read_qualified_name(), "ReadValueId data encoding");
  return v;
}

} // namespace

// ---- Identity tokens --------------------------------------------------------------------

extension_object data_change_filter(data_change_trigger trigger) {
  writer w;
  w.write(static_cast<int32_t>(trigger));
  w.write(uint32_t{0}); // DeadbandType None
  w.write(0.0); // DeadbandValue
  return {node_id{0, data_change_filter_id}, extension_object::binary, w.release()};
}

extension_object to_extension_object(const user_identity_token& t) {
  writer w;
  extension_object e;
  e.encoding = extension_object::binary;
  if (const auto* a = std::get_if<anonymous_identity_token>(&t)) {
    e.type_id = node_id{0, uint32_t{anonymous_identity_token_id}};
    put(w, std::string_view{a->policy_id});
  } else {
    const auto& u = std::get<user_name_identity_token>(t);
    e.type_id = node_id{0, uint32_t{user_name_identity_token_id}};
    put(w, std::string_view{u.policy_id});
    put(w, std::string_view{u.user_name});
    put(w, u.password);
    put(w, std::string_view{u.encryption_algorithm});
  }
  e.body = w.release();
  return e;
}

expected<user_identity_token> from_extension_object(const extension_object& e) {
  const auto* id = std::get_if<uint32_t>(&e.type_id.identifier);
  if (e.type_id.namespace_index != 0 || id == nullptr
      || (*id != anonymous_identity_token_id && *id != user_name_identity_token_id))
    return make_error(ec::parse_error,
                      "OPC UA user identity token of an unsupported type (neither "
                      "AnonymousIdentityToken i=321 nor UserNameIdentityToken i=324)");
  if (e.encoding != extension_object::binary)
    return make_error(ec::parse_error, "OPC UA user identity token is not binary encoded");
  reader r{std::string_view{e.body}};
  if (*id == anonymous_identity_token_id) {
    anonymous_identity_token a;
    OPCUA_READ(a.policy_id, r.read_string(), "AnonymousIdentityToken policy id");
    if (auto ok = check_end(r, "AnonymousIdentityToken"); !ok)
      return ok.err();
    return user_identity_token{std::move(a)};
  }
  user_name_identity_token u;
  OPCUA_READ(u.policy_id, r.read_string(), "UserNameIdentityToken policy id");
  OPCUA_READ(u.user_name, r.read_string(), "UserNameIdentityToken user name");
  OPCUA_READ(u.password, r.read_byte_string(), "UserNameIdentityToken password");
  OPCUA_READ(u.encryption_algorithm, r.read_string(), "UserNameIdentityToken encryption algorithm");
  if (auto ok = check_end(r, "UserNameIdentityToken"); !ok)
    return ok.err();
  return user_identity_token{std::move(u)};
}

// ---- Encoders ---------------------------------------------------------------------------

std::string encode(const create_session_request& m) {
  writer w;
  write_type(w, create_session_request_id);
  write(w, m.header);
  put(w, m.client_description);
  put(w, std::string_view{m.server_uri});
  put(w, std::string_view{m.endpoint_url});
  put(w, std::string_view{m.session_name});
  put(w, m.client_nonce);
  put(w, m.client_certificate);
  w.write(m.requested_session_timeout);
  w.write(m.max_response_message_size);
  return w.release();
}

std::string encode(const create_session_response& m) {
  writer w;
  write_type(w, create_session_response_id);
  write(w, m.header);
  w.write(m.session_id);
  w.write(m.authentication_token);
  w.write(m.revised_session_timeout);
  put(w, m.server_nonce);
  put(w, m.server_certificate);
  put_array(w, m.server_endpoints, [](writer& w, const endpoint_description& e) { put(w, e); });
  put_array(w, m.server_software_certificates,
            [](writer& w, const signed_software_certificate& c) { put(w, c); });
  put(w, m.server_signature);
  w.write(m.max_request_message_size);
  return w.release();
}

std::string encode(const activate_session_request& m) {
  writer w;
  write_type(w, activate_session_request_id);
  write(w, m.header);
  put(w, m.client_signature);
  put_array(w, m.client_software_certificates,
            [](writer& w, const signed_software_certificate& c) { put(w, c); });
  put_strings(w, m.locale_ids);
  w.write(to_extension_object(m.identity));
  put(w, m.user_token_signature);
  return w.release();
}

std::string encode(const activate_session_response& m) {
  writer w;
  write_type(w, activate_session_response_id);
  write(w, m.header);
  put(w, m.server_nonce);
  put_statuses(w, m.results);
  put_empty_diagnostics(w);
  return w.release();
}

std::string encode(const close_session_request& m) {
  writer w;
  write_type(w, close_session_request_id);
  write(w, m.header);
  w.write(m.delete_subscriptions);
  return w.release();
}

std::string encode(const close_session_response& m) {
  writer w;
  write_type(w, close_session_response_id);
  write(w, m.header);
  return w.release();
}

std::string encode(const read_request& m) {
  writer w;
  write_type(w, read_request_id);
  write(w, m.header);
  w.write(m.max_age);
  w.write(static_cast<int32_t>(m.timestamps));
  put_array(w, m.nodes_to_read, [](writer& w, const read_value_id& v) { put(w, v); });
  return w.release();
}

std::string encode(const read_response& m) {
  writer w;
  write_type(w, read_response_id);
  write(w, m.header);
  put_array(w, m.results, [](writer& w, const data_value& v) { w.write(v); });
  put_empty_diagnostics(w);
  return w.release();
}

std::string encode(const browse_request& m) {
  writer w;
  write_type(w, browse_request_id);
  write(w, m.header);
  w.write(m.view.view_id);
  w.write(m.view.timestamp);
  w.write(m.view.view_version);
  w.write(m.requested_max_references_per_node);
  put_array(w, m.nodes_to_browse, [](writer& w, const browse_description& d) {
    w.write(d.node);
    w.write(static_cast<int32_t>(d.direction));
    w.write(d.reference_type_id);
    w.write(d.include_subtypes);
    w.write(d.node_class_mask);
    w.write(d.result_mask);
  });
  return w.release();
}

std::string encode(const browse_response& m) {
  writer w;
  write_type(w, browse_response_id);
  write(w, m.header);
  put_array(w, m.results, [](writer& w, const browse_result& b) {
    w.write(b.status);
    put(w, b.continuation_point);
    put_array(w, b.references, [](writer& w, const reference_description& d) {
      w.write(d.reference_type_id);
      w.write(d.is_forward);
      w.write(d.node);
      put(w, d.browse_name);
      w.write(d.display_name);
      w.write(d.node_class);
      w.write(d.type_definition);
    });
  });
  put_empty_diagnostics(w);
  return w.release();
}

std::string encode(const translate_browse_paths_request& m) {
  writer w;
  write_type(w, translate_browse_paths_request_id);
  write(w, m.header);
  put_array(w, m.browse_paths, [](writer& w, const browse_path& p) {
    w.write(p.starting_node);
    put_array(w, p.elements, [](writer& w, const relative_path_element& e) {
      w.write(e.reference_type_id);
      w.write(e.is_inverse);
      w.write(e.include_subtypes);
      put(w, e.target_name);
    });
  });
  return w.release();
}

std::string encode(const translate_browse_paths_response& m) {
  writer w;
  write_type(w, translate_browse_paths_response_id);
  write(w, m.header);
  put_array(w, m.results, [](writer& w, const browse_path_result& p) {
    w.write(p.status);
    put_array(w, p.targets, [](writer& w, const browse_path_target& t) {
      w.write(t.target_id);
      w.write(t.remaining_path_index);
    });
  });
  put_empty_diagnostics(w);
  return w.release();
}

// ---- Decoders ---------------------------------------------------------------------------

expected<create_session_request> decode_create_session_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_session_request_id); !ok)
    return ok.err();
  const char* what = "CreateSessionRequest";
  create_session_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.client_description, read_application_description(r),
             "CreateSessionRequest client description");
  OPCUA_READ(m.server_uri, r.read_string(), "CreateSessionRequest server uri");
  OPCUA_READ(m.endpoint_url, r.read_string(), "CreateSessionRequest endpoint url");
  OPCUA_READ(m.session_name, r.read_string(), "CreateSessionRequest session name");
  OPCUA_READ(m.client_nonce, r.read_byte_string(), "CreateSessionRequest client nonce");
  OPCUA_READ(m.client_certificate, r.read_byte_string(), "CreateSessionRequest client certificate");
  OPCUA_READ(m.requested_session_timeout, r.read_double(),
             "CreateSessionRequest requested session timeout");
  OPCUA_READ(m.max_response_message_size, r.read_uint32(),
             "CreateSessionRequest max response message size");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<create_session_response> decode_create_session_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_session_response_id); !ok)
    return ok.err();
  const char* what = "CreateSessionResponse";
  create_session_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.session_id, r.read_node_id(), "CreateSessionResponse session id");
  OPCUA_READ(m.authentication_token, r.read_node_id(),
             "CreateSessionResponse authentication token");
  OPCUA_READ(m.revised_session_timeout, r.read_double(),
             "CreateSessionResponse revised session timeout");
  OPCUA_READ(m.server_nonce, r.read_byte_string(), "CreateSessionResponse server nonce");
  OPCUA_READ(m.server_certificate, r.read_byte_string(),
             "CreateSessionResponse server certificate");
  OPCUA_READ(m.server_endpoints,
             read_array<endpoint_description>(r, "CreateSessionResponse server endpoints", 4,
                                              read_endpoint_description),
             what);
  OPCUA_READ(m.server_software_certificates,
             read_certificates(r, "CreateSessionResponse server software certificates"), what);
  OPCUA_READ(m.server_signature, read_signature_data(r), "CreateSessionResponse server signature");
  OPCUA_READ(m.max_request_message_size, r.read_uint32(),
             "CreateSessionResponse max request message size");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<activate_session_request> decode_activate_session_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, activate_session_request_id); !ok)
    return ok.err();
  const char* what = "ActivateSessionRequest";
  activate_session_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.client_signature, read_signature_data(r), "ActivateSessionRequest client signature");
  OPCUA_READ(m.client_software_certificates,
             read_certificates(r, "ActivateSessionRequest client software certificates"), what);
  OPCUA_READ(m.locale_ids, read_strings(r, "ActivateSessionRequest locale ids"), what);
  size_t at = r.offset();
  extension_object token;
  OPCUA_READ(token, r.read_extension_object(), "ActivateSessionRequest user identity token");
  auto identity = from_extension_object(token);
  if (!identity)
    return in("ActivateSessionRequest user identity token at offset " + std::to_string(at),
              identity.err());
  m.identity = std::move(*identity);
  OPCUA_READ(m.user_token_signature, read_signature_data(r),
             "ActivateSessionRequest user token signature");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<activate_session_response> decode_activate_session_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, activate_session_response_id); !ok)
    return ok.err();
  const char* what = "ActivateSessionResponse";
  activate_session_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.server_nonce, r.read_byte_string(), "ActivateSessionResponse server nonce");
  OPCUA_READ(m.results, read_statuses(r, "ActivateSessionResponse results"), what);
  if (auto ok = read_empty_diagnostics(r, "ActivateSessionResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<close_session_request> decode_close_session_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, close_session_request_id); !ok)
    return ok.err();
  const char* what = "CloseSessionRequest";
  close_session_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.delete_subscriptions, r.read_boolean(), "CloseSessionRequest delete subscriptions");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<close_session_response> decode_close_session_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, close_session_response_id); !ok)
    return ok.err();
  const char* what = "CloseSessionResponse";
  close_session_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<read_request> decode_read_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, read_request_id); !ok)
    return ok.err();
  const char* what = "ReadRequest";
  read_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.max_age, r.read_double(), "ReadRequest max age");
  OPCUA_READ(m.timestamps,
             read_enum<timestamps_to_return>(r, "ReadRequest timestamps to return", 3), what);
  OPCUA_READ(m.nodes_to_read,
             read_array<read_value_id>(r, "ReadRequest nodes to read", 16, read_read_value_id),
             what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<read_response> decode_read_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, read_response_id); !ok)
    return ok.err();
  const char* what = "ReadResponse";
  read_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.results,
             read_array<data_value>(r, "ReadResponse results", 1,
                                    [](reader& r) { return r.read_data_value(); }),
             what);
  if (auto ok = read_empty_diagnostics(r, "ReadResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<browse_request> decode_browse_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, browse_request_id); !ok)
    return ok.err();
  const char* what = "BrowseRequest";
  browse_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.view.view_id, r.read_node_id(), "ViewDescription view id");
  OPCUA_READ(m.view.timestamp, r.read_date_time(), "ViewDescription timestamp");
  OPCUA_READ(m.view.view_version, r.read_uint32(), "ViewDescription view version");
  OPCUA_READ(m.requested_max_references_per_node, r.read_uint32(),
             "BrowseRequest requested max references per node");
  auto one = [](reader& r) -> expected<browse_description> {
    browse_description d;
    OPCUA_READ(d.node, r.read_node_id(), "BrowseDescription node id");
    OPCUA_READ(d.direction, read_enum<browse_direction>(r, "BrowseDescription browse direction", 2),
               "BrowseDescription");
    OPCUA_READ(d.reference_type_id, r.read_node_id(), "BrowseDescription reference type id");
    OPCUA_READ(d.include_subtypes, r.read_boolean(), "BrowseDescription include subtypes");
    OPCUA_READ(d.node_class_mask, r.read_uint32(), "BrowseDescription node class mask");
    OPCUA_READ(d.result_mask, r.read_uint32(), "BrowseDescription result mask");
    return d;
  };
  OPCUA_READ(m.nodes_to_browse,
             read_array<browse_description>(r, "BrowseRequest nodes to browse", 17, one), what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<browse_response> decode_browse_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, browse_response_id); !ok)
    return ok.err();
  const char* what = "BrowseResponse";
  browse_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  auto reference = [](reader& r) -> expected<reference_description> {
    reference_description d;
    OPCUA_READ(d.reference_type_id, r.read_node_id(), "ReferenceDescription reference type id");
    OPCUA_READ(d.is_forward, r.read_boolean(), "ReferenceDescription is forward");
    OPCUA_READ(d.node, r.read_expanded_node_id(), "ReferenceDescription node id");
    OPCUA_READ(d.browse_name, r.read_qualified_name(), "ReferenceDescription browse name");
    OPCUA_READ(d.display_name, r.read_localized_text(), "ReferenceDescription display name");
    OPCUA_READ(d.node_class, r.read_int32(), "ReferenceDescription node class");
    OPCUA_READ(d.type_definition, r.read_expanded_node_id(),
               "ReferenceDescription type definition");
    return d;
  };
  auto result = [&reference](reader& r) -> expected<browse_result> {
    browse_result b;
    OPCUA_READ(b.status, r.read_status_code(), "BrowseResult status code");
    OPCUA_READ(b.continuation_point, r.read_byte_string(), "BrowseResult continuation point");
    // ReferenceDescription: NodeId 2 + Boolean 1 + ExpandedNodeId 2 + QualifiedName 6 +
    // LocalizedText 1 + Int32 4 + ExpandedNodeId 2 bytes at least.
    OPCUA_READ(b.references,
               read_array<reference_description>(r, "BrowseResult references", 18, reference),
               "BrowseResult");
    return b;
  };
  OPCUA_READ(m.results, read_array<browse_result>(r, "BrowseResponse results", 12, result), what);
  if (auto ok = read_empty_diagnostics(r, "BrowseResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<translate_browse_paths_request>
decode_translate_browse_paths_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, translate_browse_paths_request_id); !ok)
    return ok.err();
  const char* what = "TranslateBrowsePathsToNodeIdsRequest";
  translate_browse_paths_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  auto element = [](reader& r) -> expected<relative_path_element> {
    relative_path_element e;
    OPCUA_READ(e.reference_type_id, r.read_node_id(), "RelativePathElement reference type id");
    OPCUA_READ(e.is_inverse, r.read_boolean(), "RelativePathElement is inverse");
    OPCUA_READ(e.include_subtypes, r.read_boolean(), "RelativePathElement include subtypes");
    OPCUA_READ(e.target_name, r.read_qualified_name(), "RelativePathElement target name");
    return e;
  };
  auto path = [&element](reader& r) -> expected<browse_path> {
    browse_path p;
    OPCUA_READ(p.starting_node, r.read_node_id(), "BrowsePath starting node");
    OPCUA_READ(p.elements,
               read_array<relative_path_element>(r, "RelativePath elements", 10, element),
               "BrowsePath");
    return p;
  };
  OPCUA_READ(
    m.browse_paths,
    read_array<browse_path>(r, "TranslateBrowsePathsToNodeIdsRequest browse paths", 6, path), what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<translate_browse_paths_response>
decode_translate_browse_paths_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, translate_browse_paths_response_id); !ok)
    return ok.err();
  const char* what = "TranslateBrowsePathsToNodeIdsResponse";
  translate_browse_paths_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  auto target = [](reader& r) -> expected<browse_path_target> {
    browse_path_target t;
    OPCUA_READ(t.target_id, r.read_expanded_node_id(), "BrowsePathTarget target id");
    OPCUA_READ(t.remaining_path_index, r.read_uint32(), "BrowsePathTarget remaining path index");
    return t;
  };
  auto result = [&target](reader& r) -> expected<browse_path_result> {
    browse_path_result p;
    OPCUA_READ(p.status, r.read_status_code(), "BrowsePathResult status code");
    OPCUA_READ(p.targets, read_array<browse_path_target>(r, "BrowsePathResult targets", 6, target),
               "BrowsePathResult");
    return p;
  };
  OPCUA_READ(
    m.results,
    read_array<browse_path_result>(r, "TranslateBrowsePathsToNodeIdsResponse results", 8, result),
    what);
  if (auto ok = read_empty_diagnostics(r, "TranslateBrowsePathsToNodeIdsResponse diagnostic infos");
      !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

// ---- Notification data ------------------------------------------------------------------

extension_object to_extension_object(const notification_data& n) {
  if (const auto* raw = std::get_if<extension_object>(&n))
    return *raw;
  writer w;
  extension_object e;
  e.encoding = extension_object::binary;
  if (const auto* d = std::get_if<data_change_notification>(&n)) {
    e.type_id = node_id{0, uint32_t{data_change_notification_id}};
    put_array(w, d->monitored_items, [](writer& w, const monitored_item_notification& i) {
      w.write(i.client_handle);
      w.write(i.value);
    });
    put_empty_diagnostics(w);
  } else if (const auto* c = std::get_if<status_change_notification>(&n)) {
    e.type_id = node_id{0, uint32_t{status_change_notification_id}};
    w.write(c->status);
    w.write(uint8_t{0}); // the empty DiagnosticInfo
  } else {
    e.type_id = node_id{0, uint32_t{event_notification_list_id}};
    e.body = std::get<event_notification_list>(n).body;
    return e;
  }
  e.body = w.release();
  return e;
}

expected<notification_data> to_notification_data(const extension_object& e) {
  const auto* id = std::get_if<uint32_t>(&e.type_id.identifier);
  if (e.type_id.namespace_index != 0 || id == nullptr || e.encoding != extension_object::binary
      || (*id != data_change_notification_id && *id != status_change_notification_id
          && *id != event_notification_list_id))
    return notification_data{e};
  if (*id == event_notification_list_id)
    return notification_data{event_notification_list{e.body}};
  reader r{std::string_view{e.body}};
  if (*id == status_change_notification_id) {
    status_change_notification c;
    OPCUA_READ(c.status, r.read_status_code(), "StatusChangeNotification status");
    size_t at = r.offset();
    uint8_t mask = 0;
    OPCUA_READ(mask, r.read_byte(), "StatusChangeNotification diagnostic info");
    if (mask != 0)
      return fail_at(at, "StatusChangeNotification: non-empty DiagnosticInfo (mask "
                           + std::to_string(mask) + ") is not supported");
    if (auto ok = check_end(r, "StatusChangeNotification"); !ok)
      return ok.err();
    return notification_data{c};
  }
  data_change_notification d;
  auto item = [](reader& r) -> expected<monitored_item_notification> {
    monitored_item_notification i;
    OPCUA_READ(i.client_handle, r.read_uint32(), "MonitoredItemNotification client handle");
    OPCUA_READ(i.value, r.read_data_value(), "MonitoredItemNotification value");
    return i;
  };
  OPCUA_READ(
    d.monitored_items,
    read_array<monitored_item_notification>(r, "DataChangeNotification monitored items", 5, item),
    "DataChangeNotification");
  if (auto ok = read_empty_diagnostics(r, "DataChangeNotification diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, "DataChangeNotification"); !ok)
    return ok.err();
  return notification_data{std::move(d)};
}

// ---- Subscription service encoders ------------------------------------------------------

std::string encode(const create_subscription_request& m) {
  writer w;
  write_type(w, create_subscription_request_id);
  write(w, m.header);
  w.write(m.requested_publishing_interval);
  w.write(m.requested_lifetime_count);
  w.write(m.requested_max_keep_alive_count);
  w.write(m.max_notifications_per_publish);
  w.write(m.publishing_enabled);
  w.write(m.priority);
  return w.release();
}

std::string encode(const create_subscription_response& m) {
  writer w;
  write_type(w, create_subscription_response_id);
  write(w, m.header);
  w.write(m.subscription_id);
  w.write(m.revised_publishing_interval);
  w.write(m.revised_lifetime_count);
  w.write(m.revised_max_keep_alive_count);
  return w.release();
}

std::string encode(const create_monitored_items_request& m) {
  writer w;
  write_type(w, create_monitored_items_request_id);
  write(w, m.header);
  w.write(m.subscription_id);
  w.write(static_cast<int32_t>(m.timestamps));
  put_array(w, m.items_to_create, [](writer& w, const monitored_item_create_request& i) {
    put(w, i.item_to_monitor);
    w.write(static_cast<int32_t>(i.mode));
    const auto& p = i.requested_parameters;
    w.write(p.client_handle);
    w.write(p.sampling_interval);
    w.write(p.filter);
    w.write(p.queue_size);
    w.write(p.discard_oldest);
  });
  return w.release();
}

std::string encode(const create_monitored_items_response& m) {
  writer w;
  write_type(w, create_monitored_items_response_id);
  write(w, m.header);
  put_array(w, m.results, [](writer& w, const monitored_item_create_result& r) {
    w.write(r.status);
    w.write(r.monitored_item_id);
    w.write(r.revised_sampling_interval);
    w.write(r.revised_queue_size);
    w.write(r.filter_result);
  });
  put_empty_diagnostics(w);
  return w.release();
}

std::string encode(const publish_request& m) {
  writer w;
  write_type(w, publish_request_id);
  write(w, m.header);
  put_array(w, m.subscription_acknowledgements,
            [](writer& w, const subscription_acknowledgement& a) {
              w.write(a.subscription_id);
              w.write(a.sequence_number);
            });
  return w.release();
}

std::string encode(const publish_response& m) {
  writer w;
  write_type(w, publish_response_id);
  write(w, m.header);
  w.write(m.subscription_id);
  put_uint32s(w, m.available_sequence_numbers);
  w.write(m.more_notifications);
  w.write(m.message.sequence_number);
  w.write(m.message.publish_time);
  put_array(w, m.message.notifications,
            [](writer& w, const notification_data& n) { w.write(to_extension_object(n)); });
  put_statuses(w, m.results);
  put_empty_diagnostics(w);
  return w.release();
}

std::string encode(const delete_subscriptions_request& m) {
  writer w;
  write_type(w, delete_subscriptions_request_id);
  write(w, m.header);
  put_uint32s(w, m.subscription_ids);
  return w.release();
}

std::string encode(const delete_subscriptions_response& m) {
  writer w;
  write_type(w, delete_subscriptions_response_id);
  write(w, m.header);
  put_statuses(w, m.results);
  put_empty_diagnostics(w);
  return w.release();
}

// ---- Subscription service decoders ------------------------------------------------------

expected<create_subscription_request> decode_create_subscription_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_subscription_request_id); !ok)
    return ok.err();
  const char* what = "CreateSubscriptionRequest";
  create_subscription_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.requested_publishing_interval, r.read_double(),
             "CreateSubscriptionRequest requested publishing interval");
  OPCUA_READ(m.requested_lifetime_count, r.read_uint32(),
             "CreateSubscriptionRequest requested lifetime count");
  OPCUA_READ(m.requested_max_keep_alive_count, r.read_uint32(),
             "CreateSubscriptionRequest requested max keep-alive count");
  OPCUA_READ(m.max_notifications_per_publish, r.read_uint32(),
             "CreateSubscriptionRequest max notifications per publish");
  OPCUA_READ(m.publishing_enabled, r.read_boolean(),
             "CreateSubscriptionRequest publishing enabled");
  OPCUA_READ(m.priority, r.read_byte(), "CreateSubscriptionRequest priority");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<create_subscription_response> decode_create_subscription_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_subscription_response_id); !ok)
    return ok.err();
  const char* what = "CreateSubscriptionResponse";
  create_subscription_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.subscription_id, r.read_uint32(), "CreateSubscriptionResponse subscription id");
  OPCUA_READ(m.revised_publishing_interval, r.read_double(),
             "CreateSubscriptionResponse revised publishing interval");
  OPCUA_READ(m.revised_lifetime_count, r.read_uint32(),
             "CreateSubscriptionResponse revised lifetime count");
  OPCUA_READ(m.revised_max_keep_alive_count, r.read_uint32(),
             "CreateSubscriptionResponse revised max keep-alive count");
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<create_monitored_items_request>
decode_create_monitored_items_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_monitored_items_request_id); !ok)
    return ok.err();
  const char* what = "CreateMonitoredItemsRequest";
  create_monitored_items_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.subscription_id, r.read_uint32(), "CreateMonitoredItemsRequest subscription id");
  OPCUA_READ(
    m.timestamps,
    read_enum<timestamps_to_return>(r, "CreateMonitoredItemsRequest timestamps to return", 3),
    what);
  auto one = [](reader& r) -> expected<monitored_item_create_request> {
    monitored_item_create_request i;
    OPCUA_READ(i.item_to_monitor, read_read_value_id(r),
               "MonitoredItemCreateRequest item to monitor");
    OPCUA_READ(i.mode,
               read_enum<monitoring_mode>(r, "MonitoredItemCreateRequest monitoring mode", 2),
               "MonitoredItemCreateRequest");
    auto& p = i.requested_parameters;
    OPCUA_READ(p.client_handle, r.read_uint32(), "MonitoringParameters client handle");
    OPCUA_READ(p.sampling_interval, r.read_double(), "MonitoringParameters sampling interval");
    OPCUA_READ(p.filter, r.read_extension_object(), "MonitoringParameters filter");
    OPCUA_READ(p.queue_size, r.read_uint32(), "MonitoringParameters queue size");
    OPCUA_READ(p.discard_oldest, r.read_boolean(), "MonitoringParameters discard oldest");
    return i;
  };
  // MonitoredItemCreateRequest: ReadValueId 16 + Int32 4 + MonitoringParameters 20 bytes at least.
  OPCUA_READ(m.items_to_create,
             read_array<monitored_item_create_request>(
               r, "CreateMonitoredItemsRequest items to create", 40, one),
             what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<create_monitored_items_response>
decode_create_monitored_items_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, create_monitored_items_response_id); !ok)
    return ok.err();
  const char* what = "CreateMonitoredItemsResponse";
  create_monitored_items_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  auto one = [](reader& r) -> expected<monitored_item_create_result> {
    monitored_item_create_result c;
    OPCUA_READ(c.status, r.read_status_code(), "MonitoredItemCreateResult status code");
    OPCUA_READ(c.monitored_item_id, r.read_uint32(), "MonitoredItemCreateResult monitored item id");
    OPCUA_READ(c.revised_sampling_interval, r.read_double(),
               "MonitoredItemCreateResult revised sampling interval");
    OPCUA_READ(c.revised_queue_size, r.read_uint32(),
               "MonitoredItemCreateResult revised queue size");
    OPCUA_READ(c.filter_result, r.read_extension_object(),
               "MonitoredItemCreateResult filter result");
    return c;
  };
  OPCUA_READ(
    m.results,
    read_array<monitored_item_create_result>(r, "CreateMonitoredItemsResponse results", 23, one),
    what);
  if (auto ok = read_empty_diagnostics(r, "CreateMonitoredItemsResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<publish_request> decode_publish_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, publish_request_id); !ok)
    return ok.err();
  const char* what = "PublishRequest";
  publish_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  auto one = [](reader& r) -> expected<subscription_acknowledgement> {
    subscription_acknowledgement a;
    OPCUA_READ(a.subscription_id, r.read_uint32(), "SubscriptionAcknowledgement subscription id");
    OPCUA_READ(a.sequence_number, r.read_uint32(), "SubscriptionAcknowledgement sequence number");
    return a;
  };
  OPCUA_READ(m.subscription_acknowledgements,
             read_array<subscription_acknowledgement>(
               r, "PublishRequest subscription acknowledgements", 8, one),
             what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<publish_response> decode_publish_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, publish_response_id); !ok)
    return ok.err();
  const char* what = "PublishResponse";
  publish_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.subscription_id, r.read_uint32(), "PublishResponse subscription id");
  OPCUA_READ(m.available_sequence_numbers,
             read_uint32s(r, "PublishResponse available sequence numbers"), what);
  OPCUA_READ(m.more_notifications, r.read_boolean(), "PublishResponse more notifications");
  OPCUA_READ(m.message.sequence_number, r.read_uint32(), "NotificationMessage sequence number");
  OPCUA_READ(m.message.publish_time, r.read_date_time(), "NotificationMessage publish time");
  auto one = [](reader& r) -> expected<notification_data> {
    size_t at = r.offset();
    extension_object e;
    OPCUA_READ(e, r.read_extension_object(), "NotificationData");
    auto n = to_notification_data(e);
    if (!n)
      return in("NotificationData at offset " + std::to_string(at), n.err());
    return n;
  };
  OPCUA_READ(m.message.notifications,
             read_array<notification_data>(r, "NotificationMessage notification data", 3, one),
             what);
  OPCUA_READ(m.results, read_statuses(r, "PublishResponse results"), what);
  if (auto ok = read_empty_diagnostics(r, "PublishResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<delete_subscriptions_request> decode_delete_subscriptions_request(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, delete_subscriptions_request_id); !ok)
    return ok.err();
  const char* what = "DeleteSubscriptionsRequest";
  delete_subscriptions_request m;
  OPCUA_READ(m.header, read_request_header(r), what);
  OPCUA_READ(m.subscription_ids, read_uint32s(r, "DeleteSubscriptionsRequest subscription ids"),
             what);
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

expected<delete_subscriptions_response>
decode_delete_subscriptions_response(std::string_view body) {
  reader r{body};
  if (auto ok = expect_type(r, body, delete_subscriptions_response_id); !ok)
    return ok.err();
  const char* what = "DeleteSubscriptionsResponse";
  delete_subscriptions_response m;
  OPCUA_READ(m.header, read_response_header(r), what);
  OPCUA_READ(m.results, read_statuses(r, "DeleteSubscriptionsResponse results"), what);
  if (auto ok = read_empty_diagnostics(r, "DeleteSubscriptionsResponse diagnostic infos"); !ok)
    return ok.err();
  if (auto ok = check_end(r, what); !ok)
    return ok.err();
  return m;
}

#undef OPCUA_READ

} // namespace fabrik::opcua
