#include "common/collect/exact_json.h"

#include <gtest/gtest.h>

namespace marketprism::common {
namespace {

TEST(ExactJsonTest, NumbersWithAFractionKeepTheirText) {
  std::string error;
  auto j = ParseExactJson(R"({"p":[65432.10,0.1,3],"big":12345678901234567,"s":"x","n":null,"b":true})", &error);
  ASSERT_TRUE(j.has_value()) << error;
  EXPECT_EQ((*j)["p"][0], "65432.10") << "the trailing zero a double would drop";
  EXPECT_EQ((*j)["p"][1], "0.1");
  EXPECT_EQ((*j)["p"][2], 3);
  EXPECT_EQ(NumberText((*j)["p"][2]), "3");
  EXPECT_EQ(NumberText((*j)["big"]), "12345678901234567");
  EXPECT_EQ((*j)["s"], "x");
  EXPECT_TRUE((*j)["n"].is_null());
  EXPECT_EQ((*j)["b"], true);
  EXPECT_EQ(NumberText((*j)["b"]), std::nullopt);
}

TEST(ExactJsonTest, NestedContainersBuildTheSameDocumentAsTheDomParser) {
  const char* text = R"({"a":[{"b":[1,[2,{"c":"d"}],[]]},{}],"e":{"f":{"g":[true,false]}}})";
  std::string error;
  auto j = ParseExactJson(text, &error);
  ASSERT_TRUE(j.has_value()) << error;
  EXPECT_EQ(*j, nlohmann::json::parse(text));
}

TEST(ExactJsonTest, MalformedTextNamesWhere) {
  std::string error;
  EXPECT_FALSE(ParseExactJson(R"({"a":[1,2)", &error).has_value());
  EXPECT_NE(error.find("malformed JSON at byte"), std::string::npos) << error;
  EXPECT_FALSE(ParseExactJson("", &error).has_value());
}

TEST(ExactJsonTest, ExponentsAreWrittenOutAsPlainDecimals) {
  EXPECT_EQ(PlainDecimal("1.5e-3"), "0.0015");
  EXPECT_EQ(PlainDecimal("-2.5E+2"), "-250");
  EXPECT_EQ(PlainDecimal("12.345e1"), "123.45");
  EXPECT_EQ(PlainDecimal("1e0"), "1");
  EXPECT_EQ(PlainDecimal("0.00"), "0.00");
  EXPECT_EQ(PlainDecimal("7E-1"), "0.7");
  EXPECT_EQ(PlainDecimal("abc"), std::nullopt);
  EXPECT_EQ(PlainDecimal("1e999"), std::nullopt);
  std::string error;
  auto j = ParseExactJson(R"([1e-8])", &error);
  ASSERT_TRUE(j.has_value()) << error;
  EXPECT_EQ((*j)[0], "0.00000001");
}

}  // namespace
}  // namespace marketprism::common
