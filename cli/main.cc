#include <cstdio>
#include "xent/version.h"
int main() { std::printf("xent %s\n", XENT_VERSION_STRING); }
