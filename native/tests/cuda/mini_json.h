// A minimal JSON reader for the test fixtures' small index files (test/fixtures/*.json).
#ifndef ADAMP_TESTS_MINI_JSON_H
#define ADAMP_TESTS_MINI_JSON_H

#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mini_json {

struct Value {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Value> arr;
  std::map<std::string, Value> obj;

  bool is_null() const { return kind == Null; }
  const Value& operator[](const std::string& k) const {
    static const Value null_value;
    auto it = obj.find(k);
    return it == obj.end() ? null_value : it->second;
  }
  const Value& operator[](size_t i) const { return arr.at(i); }
  size_t size() const { return kind == Array ? arr.size() : obj.size(); }
  bool has(const std::string& k) const { return obj.count(k) != 0; }
  double number(double dflt = 0) const {
    if (kind == Number) return num;
    if (kind == Bool) return b ? 1 : 0;
    if (kind == String) {
      if (str == "NaN") return NAN;
      if (str == "Infinity") return HUGE_VAL;
      if (str == "-Infinity") return -HUGE_VAL;
    }
    return dflt;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  Value parse() {
    Value v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;
  [[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string("json: ") + what + " at " + std::to_string(i_)); }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool lit(const char* w) {
    size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  Value value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Value v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Value::Object;
      ++i_;
      ws();
      if (s_[i_] == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        Value k = value();
        if (k.kind != Value::String) fail("object key");
        ws();
        if (s_[i_++] != ':') fail("':'");
        v.obj[k.str] = value();
        ws();
        if (s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (s_[i_] == '}') {
          ++i_;
          return v;
        }
        fail("',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Value::Array;
      ++i_;
      ws();
      if (s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v.arr.push_back(value());
        ws();
        if (s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (s_[i_] == ']') {
          ++i_;
          return v;
        }
        fail("',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Value::String;
      ++i_;
      while (i_ < s_.size() && s_[i_] != '"') {
        if (s_[i_] == '\\') ++i_;  // fixtures hold no escapes worth decoding
        v.str += s_[i_++];
      }
      ++i_;
      return v;
    }
    if (lit("true")) {
      v.kind = Value::Bool;
      v.b = true;
      return v;
    }
    if (lit("false")) {
      v.kind = Value::Bool;
      return v;
    }
    if (lit("null")) return v;
    char* end = nullptr;
    v.kind = Value::Number;
    v.num = std::strtod(s_.c_str() + i_, &end);
    if (end == s_.c_str() + i_) fail("value");
    i_ = end - s_.c_str();
    return v;
  }
};

inline Value parse(const std::string& s) { return Parser(s).parse(); }

}  // namespace mini_json

#endif  // ADAMP_TESTS_MINI_JSON_H
