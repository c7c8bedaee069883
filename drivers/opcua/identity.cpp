#include "drivers/opcua/identity.hpp"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>

namespace fabrik::opcua {
namespace {

constexpr std::string_view policy_prefix = "http://opcfoundation.org/UA/SecurityPolicy#";

/// The padding a user token policy's security policy asks for, or "" for plain text.
expected<std::string_view> padding_for(std::string_view policy_uri) {
  if (policy_uri.empty() || policy_uri == security_policy_none)
    return std::string_view{};
  auto name =
    policy_uri.starts_with(policy_prefix) ? policy_uri.substr(policy_prefix.size()) : policy_uri;
  if (name == "Basic128Rsa15")
    return rsa_15_uri;
  if (name == "Basic256" || name == "Basic256Sha256" || name == "Aes128_Sha256_RsaOaep")
    return rsa_oaep_uri;
  if (name == "Aes256_Sha256_RsaPss")
    return rsa_oaep_sha256_uri;
  return make_error(ec::invalid_argument, "the server wants the password encrypted for "
                                            + std::string{policy_uri}
                                            + ", which fabrik does not support");
}

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const { F(p); }
};
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;

} // namespace

expected<std::string> rsa_encrypt(std::string_view der, std::string_view padding,
                                  std::string_view plain) {
  auto fail = [](const std::string& why) {
    return make_error(ec::invalid_argument, "cannot encrypt the password: " + why);
  };
  auto* p = reinterpret_cast<const unsigned char*>(der.data());
  x509_ptr cert{d2i_X509(nullptr, &p, static_cast<long>(der.size()))};
  if (!cert)
    return fail("the server certificate is not DER X.509");
  pkey_ptr key{X509_get_pubkey(cert.get())};
  if (!key || EVP_PKEY_base_id(key.get()) != EVP_PKEY_RSA)
    return fail("the server certificate has no RSA key");
  int pad = RSA_PKCS1_OAEP_PADDING;
  size_t overhead = 42; // OAEP with SHA-1: 2 * 20 + 2
  if (padding == rsa_15_uri) {
    pad = RSA_PKCS1_PADDING;
    overhead = 11;
  } else if (padding == rsa_oaep_sha256_uri) {
    overhead = 66;
  } else if (padding != rsa_oaep_uri) {
    return fail("unknown algorithm " + std::string{padding});
  }
  auto key_size = static_cast<size_t>(EVP_PKEY_get_size(key.get()));
  if (key_size <= overhead)
    return fail("the server's RSA key is too small");
  std::string out;
  for (size_t at = 0; at < plain.size() || at == 0; at += key_size - overhead) {
    auto block = plain.substr(at, key_size - overhead);
    ctx_ptr ctx{EVP_PKEY_CTX_new(key.get(), nullptr)};
    if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0
        || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), pad) <= 0)
      return fail("OpenSSL refused the key");
    if (padding == rsa_oaep_sha256_uri
        && (EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) <= 0
            || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) <= 0))
      return fail("OpenSSL refused SHA-256 for OAEP");
    size_t len = key_size;
    auto old = out.size();
    out.resize(old + len);
    if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data() + old), &len,
                         reinterpret_cast<const unsigned char*>(block.data()), block.size())
        <= 0)
      return fail("OpenSSL could not encrypt");
    out.resize(old + len);
    if (plain.empty())
      break;
  }
  return out;
}

expected<user_identity_token> make_identity(const std::vector<endpoint_description>& endpoints,
                                            const credentials& who,
                                            const byte_string& server_certificate,
                                            const byte_string& server_nonce) {
  auto want = who.user.empty() ? user_token_type::anonymous : user_token_type::user_name;
  const endpoint_description* none = nullptr;
  for (auto& e : endpoints)
    if (e.mode == security_mode::none && e.security_policy_uri == security_policy_none)
      none = &e;
  if (!none)
    return make_error(ec::invalid_argument,
                      "the server offers no endpoint with SecurityPolicy None, the only one "
                      "fabrik's OPC UA client speaks");
  // Prefer a policy fabrik can use: plain first, then one it can encrypt for.
  const user_token_policy* chosen = nullptr;
  std::string refused;
  for (auto& t : none->user_identity_tokens) {
    if (t.token_type != want)
      continue;
    auto padding = padding_for(t.security_policy_uri);
    if (!padding) {
      refused = padding.err().message;
      continue;
    }
    if (!chosen || padding->empty())
      chosen = &t;
  }
  if (!chosen) {
    if (!refused.empty())
      return make_error(ec::invalid_argument, refused);
    return make_error(ec::invalid_argument,
                      want == user_token_type::anonymous
                        ? "the server does not allow anonymous logins: set user and password"
                        : "the server does not accept user names and passwords");
  }
  if (want == user_token_type::anonymous)
    return user_identity_token{anonymous_identity_token{chosen->policy_id}};

  user_name_identity_token token{chosen->policy_id, who.user, {}, {}};
  auto padding = *padding_for(chosen->security_policy_uri);
  if (padding.empty()) {
    token.password.bytes = who.password;
    return user_identity_token{std::move(token)};
  }
  auto& cert =
    server_certificate.bytes.empty() ? none->server_certificate.bytes : server_certificate.bytes;
  if (cert.empty())
    return make_error(ec::invalid_argument,
                      "the server wants the password encrypted but sent no certificate");
  // Part 4 7.36.2.2: UInt32 length of what follows, the password, the server nonce.
  std::string plain;
  auto n = static_cast<uint32_t>(who.password.size() + server_nonce.bytes.size());
  for (int i = 0; i < 4; ++i)
    plain += static_cast<char>((n >> (8 * i)) & 0xff);
  plain += who.password;
  plain += server_nonce.bytes;
  auto secret = rsa_encrypt(cert, padding, plain);
  if (!secret)
    return secret.err();
  token.password.bytes = std::move(*secret);
  token.encryption_algorithm = std::string{padding};
  return user_identity_token{std::move(token)};
}

} // namespace fabrik::opcua
