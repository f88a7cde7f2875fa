// stream.cpp: stream_cpp BASE_URL PROMPT streams the reply to stdout (CMake example, C++).
#include <iostream>

#include <ylokh.hpp>

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: stream_cpp BASE_URL PROMPT\n";
        return 1;
    }
    try {
        ylokh::client client(argv[1]);
        client.chat({{"user", argv[2]}},
                    [](std::string_view token) { std::cout << token << std::flush; },
                    {"", R"({"max_tokens":48})", nullptr});
        std::cout << '\n';
    } catch (const ylokh::error &e) {
        std::cerr << '\n'
                  << ylokh::status_string(e.status()) << " (HTTP " << e.http_status()
                  << "): " << e.what() << '\n';
        return 2;
    }
    return 0;
}
