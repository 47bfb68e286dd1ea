// Reading and writing safetensors and .npy files.
#include "mlx-ffi/src/bridge.rs.h"

namespace mx = mlx::core;

namespace mlx_bridge {

rust::Vec<NamedArray> load_safetensors(rust::Str path, rust::Vec<MetadataEntry>& metadata) {
  auto [arrays, meta] = mx::load_safetensors(std::string(path));
  rust::Vec<NamedArray> out;
  out.reserve(arrays.size());
  for (auto& [name, a] : arrays) {
    out.push_back(NamedArray{rust::String(name), std::make_unique<array>(a)});
  }
  metadata.clear();
  for (auto& [key, value] : meta) {
    metadata.push_back(MetadataEntry{rust::String(key), rust::String(value)});
  }
  return out;
}

void save_safetensors(rust::Str path, const rust::Vec<rust::String>& names, const ArrayVec& arrays,
                      const rust::Vec<MetadataEntry>& metadata) {
  if (names.size() != arrays.v.size()) {
    throw std::invalid_argument("[save_safetensors] names and arrays differ in length");
  }
  std::unordered_map<std::string, array> map;
  for (std::size_t i = 0; i < names.size(); ++i) {
    map.insert_or_assign(std::string(names[i]), arrays.v[i]);
  }
  std::unordered_map<std::string, std::string> meta;
  for (const auto& entry : metadata) meta[std::string(entry.key)] = std::string(entry.value);
  mx::save_safetensors(std::string(path), std::move(map), std::move(meta));
}

ArrayPtr load_npy(rust::Str path) { return wrap(mx::load(std::string(path))); }
void save_npy(rust::Str path, const array& a) { mx::save(std::string(path), a); }

}  // namespace mlx_bridge
