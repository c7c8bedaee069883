// fabrik certs: a local certificate authority and node certificates for a test
// deployment, so nodes talk TLS and refuse any process without a certificate of theirs.
// OpenSSL's own API: no `openssl` command needed on the machine.

#include "cli/commands.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <sys/stat.h>

namespace fabrik::cli {
namespace {

using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

key_ptr new_key() { return {EVP_EC_gen("prime256v1"), &EVP_PKEY_free}; }

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext)
    return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/// A certificate for `name` with `key`, signed by `issuer` (itself when null) with
/// `issuer_key`.
cert_ptr make_cert(const std::string& name, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
                   bool ca, long days) {
  cert_ptr cert{X509_new(), &X509_free};
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f; // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("fabrik"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  bool ok = ca ? add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE")
                   && add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign")
                   && add_ext(cert.get(), signer, NID_subject_key_identifier, "hash")
               : add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE")
                   && add_ext(cert.get(), signer, NID_key_usage,
                              "critical,digitalSignature,keyEncipherment")
                   && add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth")
                   && add_ext(cert.get(), signer, NID_subject_alt_name, ("DNS:" + name).c_str());
  if (!ok || X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0)
    return {nullptr, &X509_free};
  return cert;
}

bool write_pem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
  FILE* out = std::fopen(path.c_str(), "w");
  if (!out)
    return false;
  if (key)
    ::fchmod(fileno(out), 0600); // a private key is for its node only
  bool ok = cert ? PEM_write_X509(out, cert) == 1
                 : PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  return std::fclose(out) == 0 && ok;
}

template <class T, class Reader>
std::unique_ptr<T, void (*)(T*)> read_pem(const std::filesystem::path& path, Reader read,
                                          void (*free)(T*)) {
  FILE* in = std::fopen(path.c_str(), "r");
  if (!in)
    return {nullptr, free};
  T* x = read(in, nullptr, nullptr, nullptr);
  std::fclose(in);
  return {x, free};
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
           || c == '_' || c == '.';
  });
}

} // namespace

int certs(const args& a) {
  if (wants_help(a) || a.empty()) {
    std::puts(
      "usage: fabrik certs DIR NODE... [--days N]\n\n"
      "Makes what nodes need to talk TLS in a test deployment: a certificate authority\n"
      "(DIR/ca.crt, DIR/ca.key; kept and reused when DIR already has one) and for each NODE\n"
      "a key and a certificate signed by it (DIR/NODE.key, DIR/NODE.crt). Give each node\n"
      "its own files in the flow's nodes section:\n\n"
      "  nodes:\n"
      "    edge: {listen: ..., certificate: DIR/edge.crt, key: DIR/edge.key, ca: DIR/ca.crt}\n\n"
      "A process without a certificate signed by this CA cannot attach to such a node.\n"
      "Keep ca.key away from the nodes. For production, use your own PKI.\n\n"
      "  --days N   how long node certificates are valid (default 365; the CA: 10 years)");
    return a.empty() ? 1 : 0;
  }
  auto c = parse_command_line(a, "certs", {"--days"});
  if (!c)
    return 1;
  if (c->positionals.size() < 2)
    return fail(1, "certs needs a directory and at least one node name; see fabrik certs --help");
  long days = 365;
  if (auto d = c->option("--days")) {
    char* end = nullptr;
    days = std::strtol(d->c_str(), &end, 10);
    if (*end != '\0' || days < 1 || days > 36500)
      return fail(1, "--days takes a number of days from 1 to 36500");
  }
  std::filesystem::path dir = c->positionals.front();
  std::error_code err;
  std::filesystem::create_directories(dir, err);
  if (err)
    return fail(1, "cannot create " + dir.string() + ": " + err.message());
  auto ca_crt = dir / "ca.crt", ca_key = dir / "ca.key";
  key_ptr ca_k{nullptr, &EVP_PKEY_free};
  cert_ptr ca_c{nullptr, &X509_free};
  if (std::filesystem::exists(ca_crt) || std::filesystem::exists(ca_key)) {
    auto k = read_pem<EVP_PKEY>(ca_key, PEM_read_PrivateKey, EVP_PKEY_free);
    auto x = read_pem<X509>(ca_crt, PEM_read_X509, X509_free);
    if (!k || !x)
      return fail(1, "cannot read the CA in " + dir.string() + " (ca.crt and ca.key)");
    ca_k = key_ptr{k.release(), &EVP_PKEY_free};
    ca_c = cert_ptr{x.release(), &X509_free};
    std::printf("using the CA in %s\n", ca_crt.c_str());
  } else {
    ca_k = new_key();
    ca_c = ca_k ? make_cert("fabrik test CA", ca_k.get(), nullptr, nullptr, true, 3650)
                : cert_ptr{nullptr, &X509_free};
    if (!ca_c || !write_pem(ca_key, nullptr, ca_k.get()) || !write_pem(ca_crt, ca_c.get(), nullptr))
      return fail(2, "cannot make the CA in " + dir.string());
    std::printf("made a CA: %s (its key %s stays here)\n", ca_crt.c_str(), ca_key.c_str());
  }
  for (auto it = c->positionals.begin() + 1; it != c->positionals.end(); ++it) {
    if (!valid_name(*it))
      return fail(1, "node name '" + *it + "' must be letters, digits, '-', '_' or '.'");
    auto k = new_key();
    auto x = k ? make_cert(*it, k.get(), ca_c.get(), ca_k.get(), false, days)
               : cert_ptr{nullptr, &X509_free};
    auto crt = dir / (*it + ".crt"), key = dir / (*it + ".key");
    if (!x || !write_pem(key, nullptr, k.get()) || !write_pem(crt, x.get(), nullptr))
      return fail(2, "cannot make the certificate of node " + *it);
    std::printf("node %s: certificate: %s, key: %s, ca: %s\n", it->c_str(), crt.c_str(),
                key.c_str(), ca_crt.c_str());
  }
  return 0;
}

} // namespace fabrik::cli
